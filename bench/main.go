// Command bench compares eventgen's generated producers and pipeline with
// hand-written sarama code doing the same work, in one run on one machine,
// and reports throughput ratios (generated ÷ raw).
//
//	go run ./bench                 # all scenarios, 3 interleaved rounds each
//	go run ./bench -n 50000 -rounds 5 -run alo
//
// Every scenario starts a fresh embedded Kafka (kfake) on 127.0.0.1 for each
// measurement, sends ~200-byte JSON events and takes the median of the
// rounds. Ratios are what BENCHMARKS.md reports; absolute numbers depend on
// the machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

type scenario struct {
	name, what string
	raw, gen   func(ctx context.Context, brokers []string, n int) (time.Duration, error)
	target     float64 // the ratio the design must reach
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("bench", flag.ContinueOnError)
	n := fl.Int("n", 20000, "events per measurement")
	rounds := fl.Int("rounds", 3, "interleaved rounds per scenario (the median is reported)")
	only := fl.String("run", "", "run only scenarios whose name contains this")
	cpuProfile := fl.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	fmt.Fprintf(out, "| scenario | raw sarama (events/s) | eventgen (events/s) | ratio | target |\n|---|---:|---:|---:|---:|\n")
	for _, s := range scenarios {
		if !strings.Contains(s.name, *only) {
			continue
		}
		var raw, gen []float64
		for range *rounds {
			r, err := measure(ctx, s.raw, *n)
			if err != nil {
				return fmt.Errorf("%s raw: %w", s.name, err)
			}
			g, err := measure(ctx, s.gen, *n)
			if err != nil {
				return fmt.Errorf("%s eventgen: %w", s.name, err)
			}
			raw, gen = append(raw, r), append(gen, g)
		}
		mr, mg := median(raw), median(gen)
		target := "-"
		if s.target > 0 {
			target = fmt.Sprintf("≥ %.1f×", s.target)
		}
		fmt.Fprintf(out, "| %s: %s | %.0f | %.0f | %.2f× | %s |\n", s.name, s.what, mr, mg, mg/mr, target)
	}
	return nil
}

// measure runs f against a fresh cluster and returns events per second over
// the part f times (set-up such as preloading input is excluded).
func measure(ctx context.Context, f func(context.Context, []string, int) (time.Duration, error), n int) (float64, error) {
	cluster, err := newCluster()
	if err != nil {
		return 0, err
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	elapsed, err := f(ctx, cluster.Brokers(), n)
	if err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
