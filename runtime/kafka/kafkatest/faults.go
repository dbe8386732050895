package kafkatest

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fault is an installed fault. Its methods are safe on a Fault returned for
// an external cluster outside a test (then Err is ErrNeedsKfake and Hits 0).
type Fault struct {
	h    *kfake.FaultHandle
	hits func() int
	stop func()
	err  error
}

// Hits is the number of requests the fault has answered so far.
func (f *Fault) Hits() int {
	switch {
	case f.h != nil:
		return f.h.Hits()
	case f.hits != nil:
		return f.hits()
	}
	return 0
}

// Wait blocks until the fault has answered at least n requests or ctx is
// done.
func (f *Fault) Wait(ctx context.Context, n int) error {
	if f.err != nil {
		return f.err
	}
	if f.h != nil {
		return f.h.Wait(ctx, n)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for f.Hits() < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Remove uninstalls the fault; requests it has not answered yet proceed.
func (f *Fault) Remove() {
	switch {
	case f.h != nil:
		f.h.Remove()
	case f.stop != nil:
		f.stop()
	}
}

// Err is ErrNeedsKfake for a fault requested on an external cluster outside
// a test, else nil.
func (f *Fault) Err() error { return f.err }

// needKfake reports whether faults can be injected; on an external cluster it
// skips the test (or, outside a test, returns false).
func (c *Cluster) needKfake(what string) bool {
	if c.kf != nil {
		return true
	}
	if c.t != nil {
		c.t.Helper()
		c.t.Skipf("kafkatest: %s needs the in-process kfake cluster; unset %s to run this test", what, EnvBrokers)
	}
	return false
}

// Fault installs raw kfake faults (see kfake.Fault).
func (c *Cluster) Fault(faults ...kfake.Fault) *Fault {
	if !c.needKfake("Fault") {
		return &Fault{err: ErrNeedsKfake}
	}
	return &Fault{h: c.kf.Fault(faults...)}
}

// FailRequests answers the next n requests with the given key with the error
// code instead of the real answer (per partition where the request carries
// partitions, else top-level). n < 0 means until Remove.
func (c *Cluster) FailRequests(key kmsg.Key, code *kerr.Error, n int) *Fault {
	if !c.needKfake("FailRequests") {
		return &Fault{err: ErrNeedsKfake}
	}
	return &Fault{h: c.kf.Fault(kfake.Fault{Keys: []kmsg.Key{key}, Err: code, Count: count(n)})}
}

func count(n int) int {
	if n == 0 {
		return 1 // kfake: 0 means one; we keep that meaning explicit
	}
	return n
}

// LoseProduceAcks makes the next n produce requests be written and then
// answered with REQUEST_TIMED_OUT, as if the acknowledgement had been lost:
// a producer that retries without idempotence writes duplicates.
func (c *Cluster) LoseProduceAcks(n int) *Fault {
	if !c.needKfake("LoseProduceAcks") {
		return &Fault{err: ErrNeedsKfake}
	}
	return &Fault{h: c.kf.Fault(kfake.Fault{
		Keys:  []kmsg.Key{kmsg.Produce},
		Err:   kerr.RequestTimedOut,
		Count: count(n),
	})}
}

// KillConnectionsOnProduce makes the broker write the next n produce requests
// (with acks != 0) and then close the client connection instead of sending
// the response: the client sees a network error for records that were
// written.
func (c *Cluster) KillConnectionsOnProduce(n int) *Fault {
	if !c.needKfake("KillConnectionsOnProduce") {
		return &Fault{err: ErrNeedsKfake}
	}
	kf := &killFault{left: int64(n)}
	c.killMu.Lock()
	c.kills = append(c.kills, kf)
	c.killMu.Unlock()
	c.killLeft.Add(int64(n))
	return &Fault{
		hits: func() int {
			c.killMu.Lock()
			defer c.killMu.Unlock()
			return int(kf.hits)
		},
		stop: func() {
			c.killMu.Lock()
			defer c.killMu.Unlock()
			c.killLeft.Add(-kf.left)
			kf.left = 0
		},
	}
}

// DelayRequests holds each of the next n requests with the given key for d
// before the broker handles it (n < 0: until Remove). Use it to push a
// broker past a client's timeout.
func (c *Cluster) DelayRequests(key kmsg.Key, d time.Duration, n int) *Fault {
	if !c.needKfake("DelayRequests") {
		return &Fault{err: ErrNeedsKfake}
	}
	var (
		hits    atomic.Int64
		removed atomic.Bool
		left    = int64(count(n))
	)
	c.kf.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.kf.KeepControl()
		if removed.Load() || (left >= 0 && hits.Load() >= left) {
			c.kf.DropControl()
			return nil, nil, false
		}
		hits.Add(1)
		c.kf.SleepControl(func() {
			t := time.NewTimer(d)
			defer t.Stop()
			<-t.C
		})
		return nil, nil, false
	})
	return &Fault{
		hits: func() int { return int(hits.Load()) },
		stop: func() { removed.Store(true) },
	}
}

// FailTxnOffsetCommit answers the next n TxnOffsetCommit requests with code
// for every partition. nil code means ILLEGAL_GENERATION, which sarama treats
// as abortable (the transaction aborts, the producer stays usable); use
// kerr.UnknownServerError for a fatal one.
func (c *Cluster) FailTxnOffsetCommit(n int, code *kerr.Error) *Fault {
	if code == nil {
		code = kerr.IllegalGeneration
	}
	return c.FailRequests(kmsg.TxnOffsetCommit, code, n)
}

// FailEndTxn answers the next n EndTxn requests with code. nil code means
// UNKNOWN_SERVER_ERROR, which sarama treats as fatal; kerr.UnknownProducerID
// is abortable (sarama bumps the epoch); retriable codes such as
// CONCURRENT_TRANSACTIONS are retried by sarama.
func (c *Cluster) FailEndTxn(n int, code *kerr.Error) *Fault {
	if code == nil {
		code = kerr.UnknownServerError
	}
	if !c.needKfake("FailEndTxn") {
		return &Fault{err: ErrNeedsKfake}
	}
	return &Fault{h: c.kf.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: code, Count: count(n), TopLevel: true})}
}

// FailAddPartitionsToTxn answers the next n AddPartitionsToTxn requests with
// code for every partition. nil code means TOPIC_AUTHORIZATION_FAILED, which
// sarama treats as abortable.
func (c *Cluster) FailAddPartitionsToTxn(n int, code *kerr.Error) *Fault {
	if code == nil {
		code = kerr.TopicAuthorizationFailed
	}
	return c.FailRequests(kmsg.AddPartitionsToTxn, code, n)
}

// listen is kfake's ListenFn: a TCP listener on the requested address whose
// connections can drop produce responses (KillConnectionsOnProduce).
func (c *Cluster) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &killListener{Listener: ln, c: c}, nil
}

type killListener struct {
	net.Listener
	c *Cluster
}

func (l *killListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &killConn{Conn: conn, c: l.c, keys: make(map[int32]int16)}, nil
}

// killConn tracks the API key of each request by correlation ID as kfake
// reads it, and closes the connection instead of writing a Produce response
// while the cluster's kill budget lasts. kfake writes each response with one
// Write call, size and correlation ID first.
type killConn struct {
	net.Conn
	c *Cluster

	// read side parser state: header holds the first 12 bytes of the
	// current frame (size, key, version, correlation ID); skip counts the
	// frame's remaining bytes after those.
	header [12]byte
	have   int
	skip   int64

	mu   sync.Mutex
	keys map[int32]int16
}

func (k *killConn) Read(p []byte) (int, error) {
	n, err := k.Conn.Read(p)
	k.parse(p[:n])
	return n, err
}

func (k *killConn) parse(b []byte) {
	for len(b) > 0 {
		if k.skip > 0 {
			m := min(int64(len(b)), k.skip)
			k.skip -= m
			b = b[m:]
			continue
		}
		m := copy(k.header[k.have:], b)
		k.have += m
		b = b[m:]
		if k.have < len(k.header) {
			return
		}
		size := int64(binary.BigEndian.Uint32(k.header[0:4]))
		key := int16(binary.BigEndian.Uint16(k.header[4:6]))
		corr := int32(binary.BigEndian.Uint32(k.header[8:12]))
		// Only produce requests while a kill is pending are tracked, so
		// acks=0 produce requests (no response) do not pile up.
		if key == int16(kmsg.Produce) && k.c.killLeft.Load() > 0 {
			k.mu.Lock()
			k.keys[corr] = key
			k.mu.Unlock()
		}
		k.have = 0
		k.skip = size - 8
	}
}

func (k *killConn) Write(b []byte) (int, error) {
	if len(b) >= 8 {
		corr := int32(binary.BigEndian.Uint32(b[4:8]))
		k.mu.Lock()
		key, ok := k.keys[corr]
		delete(k.keys, corr)
		k.mu.Unlock()
		if ok && key == int16(kmsg.Produce) && k.c.takeKill() {
			k.Conn.Close()
			return 0, net.ErrClosed
		}
	}
	return k.Conn.Write(b)
}

// killFault is the budget of one KillConnectionsOnProduce call.
type killFault struct{ left, hits int64 }

// takeKill spends one kill from the oldest fault that has some left.
func (c *Cluster) takeKill() bool {
	c.killMu.Lock()
	defer c.killMu.Unlock()
	for i, kf := range c.kills {
		if kf.left > 0 {
			kf.left--
			kf.hits++
			c.killLeft.Add(-1)
			if kf.left == 0 {
				c.kills = append(c.kills[:i:i], c.kills[i+1:]...)
			}
			return true
		}
	}
	return false
}
