package transport_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// sendPair is n1 sending to n2, which counts what it handles.
func sendPair(tb testing.TB) (*transporttest.Cluster, *atomic.Int64) {
	c := newCluster(tb, 2, nil)
	var got atomic.Int64
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	return c, &got
}

// TestSendAllocations pins the steady-state allocations of a small Send:
// the message is encoded straight into a pooled buffer.
func TestSendAllocations(t *testing.T) {
	c, got := sendPair(t)
	payload := make([]byte, 128)
	ctx := context.Background()
	send := func() {
		for {
			err := c.Nodes[0].Send(ctx, c.ID(1), verbData, payload)
			if !errors.Is(err, transport.ErrOverloaded) {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			runtime.Gosched()
		}
	}
	for range 10_000 { // warm up: connection, pools, slices at their working size
		send()
	}
	allocs := testing.AllocsPerRun(20_000, send)
	assert.LessOrEqual(t, allocs, 1.0, "allocations per small Send")
	waitFor(t, 10*time.Second, "all delivered", func() bool { return got.Load() == 10_000+20_001 })
}

// BenchmarkSend measures one-way 128-byte messages over loopback from 8
// concurrent senders (the bench's "small" scenario), counted when the
// receiving handler has run them.
func BenchmarkSend(b *testing.B) {
	c, got := sendPair(b)
	payload := make([]byte, 128)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sendRetrying(b, c.Nodes[0], c.ID(1), verbData, payload)
		}
	})
	want := int64(b.N)
	for got.Load() < want {
		runtime.Gosched()
	}
	b.StopTimer()
	st := c.Nodes[0].Stats().Total()
	if st.MessagesSent > 0 {
		b.ReportMetric(float64(st.Writes)/float64(st.MessagesSent), "writes/msg")
	}
}

// BenchmarkRequest measures 128-byte echo requests over loopback.
func BenchmarkRequest(b *testing.B) {
	c, _ := sendPair(b)
	payload := make([]byte, 128)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLarge measures 16 MiB one-way messages from 2 senders, in MB/s.
func BenchmarkLarge(b *testing.B) {
	c := newCluster(b, 2, func(i int, cfg *transport.Config) { cfg.Memory.WaitForCapacity = true })
	var got atomic.Int64
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	payload := make([]byte, 16<<20)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.SetParallelism(1)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sendRetrying(b, c.Nodes[0], c.ID(1), verbData, payload)
		}
	})
	for got.Load() < int64(b.N) {
		runtime.Gosched()
	}
}

// BenchmarkRequestAlone measures one caller's round trips, one in flight
// (the latency scenario's "call alone").
func BenchmarkRequestAlone(b *testing.B) {
	c, _ := sendPair(b)
	payload := make([]byte, 128)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestLargeResponse measures one caller's round trips, one in
// flight, of a 128-byte request answered with 1 MiB: the response goes
// back on the request's connection in parts.
func BenchmarkRequestLargeResponse(b *testing.B) {
	c := newCluster(b, 2, nil)
	answer := make([]byte, 1<<20)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return answer, nil
	}))
	payload := make([]byte, 128)
	ctx := context.Background()
	b.SetBytes(int64(len(answer)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestSparse measures one caller's round trips with the
// connection idle between them (a request every 500 µs or so): the
// latency scenario's "call alone", where every hand-off between
// goroutines wakes a sleeping thread. Its figure is p50-µs, the median
// round trip; ns/op counts the quiet time too.
func BenchmarkRequestSparse(b *testing.B) {
	c, _ := sendPair(b)
	payload := make([]byte, 128)
	ctx := context.Background()
	b.ReportAllocs()
	took := make([]time.Duration, 0, 1<<14) // before the loop: its growth is not the benchmark's
	for b.Loop() {
		time.Sleep(500 * time.Microsecond)
		start := time.Now()
		if _, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, payload); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	// ns/op counts the quiet 500 µs too: StopTimer and StartTimer would
	// keep it out, but each reads the runtime's memory statistics,
	// stopping the world, which slows the request after it by half. The
	// median request alone is this.
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
}
