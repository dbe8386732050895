// Command bench compares eventgen's generated producers and pipeline with
// hand-written sarama code doing the same work, in one run on one machine,
// and reports throughput ratios (generated ÷ raw).
//
//	go run ./bench                 # all scenarios, 3 interleaved rounds each
//	go run ./bench -n 50000 -rounds 5 -run alo
//
// Every scenario starts a fresh embedded Kafka (kfake) on 127.0.0.1 for each
// measurement and sends ~200-byte JSON events with the same key and
// CloudEvents headers on both sides. Each round measures raw and generated
// back to back (alternating which goes first); the reported ratio is the
// median of the rounds' ratios, with their range. Absolute numbers depend on
// the machine; the broker shares its CPU.
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

	"github.com/eventgen/eventgen/runtime/kafka"
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
	latencyFor := fl.Duration("latency", 3*time.Second, "after eos-default, measure the pipeline's input-to-output latency at a tenth of its throughput for this long (0: skip)")
	latencyRate := fl.Int("latency-rate", 0, "inputs per second for the latency measurement (default: a tenth of eos-default's median throughput, or 5000 without it)")
	cpuProfile := fl.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	fl.StringVar(&postgresURL, "postgres", postgresURL, "PostgreSQL for the outbox scenarios (default $EVENTGEN_POSTGRES_URL, else the test database); each measurement uses a schema of its own")
	outboxLatencyFor := fl.Duration("outbox-latency", 3*time.Second, "after the outbox scenarios, measure the relay's enqueue-to-publish latency with LISTEN/NOTIFY and with polling, for this long each (0: skip)")
	outboxRate := fl.Int("outbox-rate", 100, "events per second (one per transaction) for the outbox latency measurement")
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
	medians := map[string]float64{} // generated side, by scenario
	fmt.Fprintf(out, "| scenario | raw sarama (events/s) | eventgen (events/s) | ratio, median of rounds (range) | target |\n|---|---:|---:|---:|---:|\n")
	for _, s := range scenarios {
		if !strings.Contains(s.name, *only) {
			continue
		}
		var raw, gen, ratios []float64
		for round := range *rounds {
			// Alternate which side goes first, so that neither always
			// inherits the other's garbage or warm caches.
			first, second := s.raw, s.gen
			if round%2 == 1 {
				first, second = s.gen, s.raw
			}
			a, err := measure(ctx, first, *n)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", s.name, round, err)
			}
			b, err := measure(ctx, second, *n)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", s.name, round, err)
			}
			r, g := a, b
			if round%2 == 1 {
				r, g = b, a
			}
			raw, gen, ratios = append(raw, r), append(gen, g), append(ratios, g/r)
		}
		if s.name == "eos-default" {
			medians[s.name] = median(gen)
		}
		target := "-"
		if s.target > 0 {
			target = fmt.Sprintf("≥ %.2g×", s.target)
		}
		fmt.Fprintf(out, "| %s: %s | %.0f | %.0f | %.2f× (%.2f–%.2f) | %s |\n",
			s.name, s.what, median(raw), median(gen), median(ratios), slices.Min(ratios), slices.Max(ratios), target)
	}
	if *outboxLatencyFor > 0 && strings.Contains("outbox-latency", *only) {
		if err := printOutboxLatency(ctx, out, *outboxRate, *outboxLatencyFor); err != nil {
			return err
		}
	}
	if *latencyFor <= 0 || !strings.Contains("eos-default", *only) {
		return nil
	}
	rate := *latencyRate
	if rate == 0 {
		rate = 5000
		if m, ok := medians["eos-default"]; ok {
			rate = int(m / 10)
		}
	}
	res, err := measureLatency(ctx, rate, *latencyFor)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	limit := 3 * kafka.DefaultPipelineCommitInterval
	fmt.Fprintf(out, "\n| exactly-once pipeline at its defaults | inputs/s | inputs | p50 | p99 | max | target p99 |\n|---|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(out, "| input committed → output visible (read_committed) | %d | %d | %.1f ms | %.1f ms | %.1f ms | < %v |\n",
		res.rate, res.n, ms(res.p50), ms(res.p99), ms(res.max), limit)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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
