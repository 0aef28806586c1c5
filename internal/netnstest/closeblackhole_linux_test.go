package netnstest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestNetnsShutdownDuringABlackhole: n1 shuts down while its peer is
// behind a blackhole, its lanes holding messages: one written into the
// dead path, one dialling the peer for the first time. Shutdown must
// return by its context's deadline, every message accepted must end in
// one counted outcome, and nothing may be left running.
func TestNetnsShutdownDuringABlackhole(t *testing.T) {
	requireNft(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l := newLab(t, 2)
	var hooked [routing.NumLanes]atomic.Uint64
	n1 := l.startTransport(1, func(cfg *transport.Config) {
		faultConfig(cfg)
		cfg.Timeouts.Keepalive = 10 * time.Second
		cfg.Timeouts.Write = 10 * time.Second
		cfg.OnDropped = func(d transport.DroppedMessage) { hooked[d.Lane].Add(1) }
	})
	n2 := l.startTransport(2, faultConfig)
	var got counter
	got.serve(n2)
	id2 := nodeID(2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := n1.Send(ctx, id2, verbFaultUrgent, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, ok := pollUntil(2*time.Second, func() bool { return got.urgent.Load() == 1 }); !ok {
		t.Fatal("the first message never arrived")
	}
	base := connStatsOf(n1, id2, "urgent")

	l.partition(2, partitionByNft)
	var accepted [routing.NumLanes]uint64
	for range 200 {
		if n1.Send(context.Background(), id2, verbFaultUrgent, make([]byte, 1000)) == nil {
			accepted[routing.Urgent]++
		}
	}
	for range 3 {
		if n1.Send(context.Background(), id2, verbFaultOneWay, make([]byte, 256<<10)) == nil {
			accepted[routing.Large]++
		}
	}
	time.Sleep(300 * time.Millisecond) // written, or dialling
	start := time.Now()
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	err := n1.Shutdown(sctx)
	took := time.Since(start)
	t.Logf("Shutdown took %v: %v", took, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with messages stuck behind a blackhole: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("Shutdown took %v past its 1 s context", took)
	}
	for _, lane := range []routing.Lane{routing.Urgent, routing.Large} {
		s := connStatsOf(n1, id2, lane.String())
		written := s.MessagesSent
		if lane == routing.Urgent {
			written -= base.MessagesSent
		}
		dropped := sumReasons(s.Dropped)
		if written+dropped != accepted[lane] || dropped != hooked[lane].Load() || s.PendingMessages != 0 {
			t.Errorf("%v lane: %d accepted, %d written + %d dropped (OnDropped %d; %v), %d pending", lane, accepted[lane], written, dropped, hooked[lane].Load(), s.Dropped, s.PendingMessages)
		}
	}
	n2.Close()
}
