package netnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/internode/internode/transport"
)

// TestNetnsTrickleLinkKeepsSmallLanesMoving: n1's link to n2 is slowed to
// a trickle (tbf) while n1 sends large messages that fill it. Urgent
// messages, on their own connection, must keep arriving; requests must
// fail with a timeout error that says so; and closing both nodes with
// large messages stuck in the trickle must return promptly and leave no
// goroutine behind.
func TestNetnsTrickleLinkKeepsSmallLanesMoving(t *testing.T) {
	requireNetns(t)
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skipf("needs iproute2's tc: %v", err)
	}
	const rate = "64kbit"
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	l := newLab(t, 2)
	tune := func(cfg *transport.Config) {
		faultConfig(cfg)
		cfg.Timeouts.Keepalive = 5 * time.Second
	}
	n1, n2 := l.startPair(tune)
	var got counter
	got.serve(n2)
	var urgentAt sync.Map // sequence number -> time sent
	var worst atomic.Int64
	n2.Handle(verbFaultUrgent, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		if at, ok := urgentAt.Load(string(m.Payload)); ok {
			d := time.Since(at.(time.Time))
			for w := worst.Load(); int64(d) > w && !worst.CompareAndSwap(w, int64(d)); w = worst.Load() {
			}
		}
		got.urgent.Add(1)
		return nil, nil
	}))
	id2 := nodeID(2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if _, err := n1.Request(ctx, id2, verbFaultEcho, []byte("hi")); err != nil {
		t.Fatalf("first request: %v", err)
	}
	cancel()
	if out, err := exec.Command("ip", "netns", "exec", l.namespace(1), "tc", "qdisc", "add", "dev", nodeLink, "root", "tbf",
		"rate", rate, "burst", "4kb", "latency", "200ms").CombinedOutput(); err != nil {
		t.Skipf("tc tbf: %v: %s", err, out)
	}

	// Large messages fill the link.
	large := make([]byte, 1<<20)
	var largeAccepted atomic.Uint64
	for range 4 {
		if err := n1.Send(context.Background(), id2, verbFaultOneWay, large); err == nil {
			largeAccepted.Add(1)
		}
	}
	time.Sleep(500 * time.Millisecond)

	// Urgent messages every 100 ms and requests, for 4 s.
	start := time.Now()
	var sent uint64
	var timeouts, otherErrs int
	var lastErr error
	for i := 0; time.Since(start) < 4*time.Second; i++ {
		key := fmt.Sprint(i)
		urgentAt.Store(key, time.Now())
		if err := n1.Send(context.Background(), id2, verbFaultUrgent, []byte(key)); err != nil {
			t.Fatalf("urgent send: %v", err)
		}
		sent++
		if i%5 == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := n1.Request(ctx, id2, verbFaultEcho, make([]byte, 100))
			cancel()
			var ne net.Error
			switch {
			case err == nil:
			case errors.As(err, &ne) && ne.Timeout():
				timeouts++
			default:
				otherErrs++
				lastErr = err
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := pollUntil(3*time.Second, func() bool { return got.urgent.Load() >= sent }); !ok {
		t.Errorf("%d of %d urgent messages arrived", got.urgent.Load(), sent)
	}
	t.Logf("urgent: %d sent, %d arrived, worst latency %v; requests: %d timed out, %d other errors (%v); large: %d arrived of %d",
		sent, got.urgent.Load(), time.Duration(worst.Load()), timeouts, otherErrs, lastErr, got.oneWay.Load(), largeAccepted.Load())
	if otherErrs > 0 {
		t.Errorf("%d requests failed other than with a timeout: %v", otherErrs, lastErr)
	}
	// They share the link's one queue with the large lane's packets, and
	// its losses: a second or two. Behind a large message's part in the
	// transport they would wait for the part, 32 s at 64 kbit/s.
	if w := time.Duration(worst.Load()); w > 5*time.Second {
		t.Errorf("an urgent message took %v to arrive", w)
	}
	s := connStatsOf(n1, id2, "large")
	t.Logf("large lane: %d sent, dropped %v, pending %d", s.MessagesSent, s.Dropped, s.PendingMessages)

	closed := time.Now()
	n1.Close()
	n2.Close()
	if d := time.Since(closed); d > 2*time.Second {
		t.Errorf("Close took %v with large messages in the trickle", d)
	}
}
