package kafka

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eventgen/eventgen/runtime/event"
	"github.com/eventgen/eventgen/runtime/kafka/kafkatest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Attacks on the pipelines from outside (issue 7, "break it"): clients that
// are not eventgen, broker answers injected through kfake, group members
// with their own protocol. Each test states the property it probes; the
// ones that fail today say so in their comment.

// clientGoroutines returns the stacks of the running goroutines that belong
// to sarama or to this package's runtime (not to kfake, not to the tests).
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "github.com/IBM/sarama.") || strings.Contains(s, "eventgen/runtime/kafka.(*") {
			if strings.Contains(s, "kafkatest") || strings.Contains(s, "_test.go") && !strings.Contains(s, "eventgen/runtime/kafka.(*") {
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// waitNoLeak waits until at most base client goroutines run, and fails t
// with the extra stacks otherwise.
func waitNoLeak(t *testing.T, base int, what string) {
	t.Helper()
	if kafkatest.Eventually(5*time.Second, func() bool { return len(clientGoroutines()) <= base }) {
		return
	}
	gs := clientGoroutines()
	first := gs
	if len(first) > 4 {
		first = first[:4]
	}
	t.Errorf("%s: %d sarama/eventgen goroutines still running 5 s after return, %d before it started; first stacks:\n%s",
		what, len(gs), base, strings.Join(first, "\n\n"))
}

// TestBreakPipelineStartFailureLeaksClient: the coordinator refuses the
// pipeline's InitProducerID for good (TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
// what a broker with ACLs answers a principal that may not use the ID).
// RunPipeline returns the error, but the sarama client that
// sarama.NewAsyncProducer created for the producer is never closed: its
// metadata updater and broker connections keep running after RunPipeline
// returned. The same happens in engine.reinit when the re-initialised
// producer cannot start.
//
// FAILS today: newOutputs (pipeline_outputs.go:45) calls
// sarama.NewAsyncProducer, which leaks the client it creates when
// InitProducerID fails (sarama's newAsyncProducer returns without closing
// it). Fix: create the client with sarama.NewClient, build the producer with
// sarama.NewAsyncProducerFromClient, close the client on error, and close it
// after the producer in outputs.close.
func TestBreakPipelineStartFailureLeaksClient(t *testing.T) {
	cl := kafkatest.Start(t, kafkatest.Options{Partitions: 2, InProcess: true})
	in := testEventType("Input", "leak-in", event.ExactlyOnce)
	out := testEventType("Output", "leak-out", event.ExactlyOnce)
	cl.CreateTopic(t, in.Topic, 2)
	cl.CreateTopic(t, out.Topic, 2)
	kf := cl.Kfake()
	kf.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		resp := req.(*kmsg.InitProducerIDRequest).ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil, true
	})
	base := len(clientGoroutines())
	for i := range 3 {
		err := RunPipeline(context.Background(), PipelineConfig{
			Config:  Config{Brokers: cl.Brokers(), Tune: kafkatest.FastTune},
			GroupID: "leak", TransactionalID: "leak-tx",
		}, in, []*event.Type{out}, decodeTestEvent, testTransform(out, 0))
		if err == nil || !strings.Contains(err.Error(), "TRANSACTIONAL_ID_AUTHORIZATION_FAILED") && !strings.Contains(err.Error(), "uthoriz") {
			t.Fatalf("start %d: RunPipeline returned %v, want the authorization error", i, err)
		}
	}
	waitNoLeak(t, base, "3 RunPipeline calls that failed to start their producer")
}
