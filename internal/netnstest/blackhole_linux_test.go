package netnstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// Verbs of the in-process fault tests.
const (
	verbFaultOneWay transport.Verb = 301 // one-way, counted
	verbFaultEcho   transport.Verb = 302 // request, echoed
	verbFaultUrgent transport.Verb = 303 // one-way, counted, on the urgent lane
)

// faultKeepalive is the fault tests' Timeouts.Keepalive: a dead connection
// must be found within it (plus a keepalive interval of slack).
const faultKeepalive = 2 * time.Second

// faultConfig tunes a fault test's node: short keepalive and write
// timeouts, quick redials, and the urgent verb pinned to its lane.
func faultConfig(cfg *transport.Config) {
	cfg.Timeouts.Keepalive = faultKeepalive
	cfg.Timeouts.Write = 3 * time.Second
	cfg.Reconnect.MinBackoff = 20 * time.Millisecond
	cfg.Reconnect.MaxBackoff = 300 * time.Millisecond
	cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbFaultUrgent: routing.Urgent}
}

// counter counts one-way messages arrived, by verb.
type counter struct{ oneWay, urgent atomic.Uint64 }

func (c *counter) serve(tr *transport.Transport) {
	tr.Handle(verbFaultOneWay, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		c.oneWay.Add(1)
		return nil, nil
	}))
	tr.Handle(verbFaultUrgent, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		c.urgent.Add(1)
		return nil, nil
	}))
	tr.Handle(verbFaultEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		return append([]byte(nil), m.Payload...), nil
	}))
}

// load sends from one node to another until stopped: one-way messages on
// every lane, and requests, each kind on its own goroutine, and counts what
// was accepted.
type load struct {
	accepted [routing.NumLanes]atomic.Uint64
	refused  [routing.NumLanes]atomic.Uint64
	reqOK    atomic.Uint64
	reqErr   atomic.Uint64
	lastErr  atomic.Value // string
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startLoad(from *transport.Transport, to cluster.NodeID, every time.Duration) *load {
	ld := &load{stop: make(chan struct{})}
	small, large := make([]byte, 512), make([]byte, 256<<10)
	// ticking runs f every tick until halt, in a goroutine of its own.
	ticking := func(f func()) {
		ld.wg.Go(func() {
			ticker := time.NewTicker(every)
			defer ticker.Stop()
			for {
				select {
				case <-ld.stop:
					return
				case <-ticker.C:
				}
				f()
			}
		})
	}
	oneWay := func(lane routing.Lane, verb transport.Verb, payload []byte) {
		ticking(func() {
			if err := from.Send(context.Background(), to, verb, payload); err != nil {
				ld.refused[lane].Add(1)
				ld.lastErr.Store(fmt.Sprintf("send on %v: %v", lane, err))
			} else {
				ld.accepted[lane].Add(1)
			}
		})
	}
	oneWay(routing.Urgent, verbFaultUrgent, small[:64])
	oneWay(routing.Small, verbFaultOneWay, small)
	oneWay(routing.Large, verbFaultOneWay, large)
	ticking(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := from.Request(ctx, to, verbFaultEcho, small[:100])
		cancel()
		if err != nil {
			ld.reqErr.Add(1)
			ld.lastErr.Store(fmt.Sprintf("request: %v", err))
		} else {
			ld.reqOK.Add(1)
		}
	})
	return ld
}

// flowing reports whether every lane has taken a one-way message and a
// request has been answered.
func (ld *load) flowing() bool {
	for lane := range ld.accepted {
		if ld.accepted[lane].Load() == 0 {
			return false
		}
	}
	return ld.reqOK.Load() > 0
}

// redialling reports whether one of from's lanes to peer is dialling it,
// or backing off after a failed dial, with messages waiting.
func redialling(from *transport.Transport, peer cluster.NodeID) bool {
	h := from.Health()
	ph, _ := h.Peer(peer)
	for _, l := range ph.Lanes {
		if l.State == transport.LaneDialing || l.State == transport.LaneBackoff {
			return true
		}
	}
	return false
}

func (ld *load) halt() {
	close(ld.stop)
	ld.wg.Wait()
}

// requireAccounted waits until every one-way message accepted on each lane
// since base has one outcome at from: written or dropped with a reason,
// nothing pending; and that the receiver got no more than was written.
func requireAccounted(t *testing.T, from *transport.Transport, to cluster.NodeID, base [routing.NumLanes]transport.ConnStats, ld *load, limit time.Duration) [routing.NumLanes]transport.ConnStats {
	t.Helper()
	now := settled(t, from, to, limit)
	for lane := range routing.Lane(routing.NumLanes) {
		if lane == routing.Small {
			continue // requests share it, and their cancels
		}
		written := now[lane].MessagesSent - base[lane].MessagesSent
		dropped := sumReasons(now[lane].Dropped) - sumReasons(base[lane].Dropped)
		// Stats count a Send refused once its lane was chosen (no
		// outbound room) as dropped too.
		accepted, refused := ld.accepted[lane].Load(), ld.refused[lane].Load()
		if written+dropped != accepted+refused {
			t.Errorf("%v to %v, %v lane: %d accepted and %d refused, %d written + %d dropped = %d outcomes (dropped by reason %v)",
				from.Health().Node, to, routing.Lane(lane), accepted, refused, written, dropped, written+dropped, now[lane].Dropped)
		}
	}
	return now
}

// settled waits until nothing is pending on from's lanes to peer, and
// returns their stats then.
func settled(t *testing.T, from *transport.Transport, to cluster.NodeID, limit time.Duration) [routing.NumLanes]transport.ConnStats {
	t.Helper()
	var now [routing.NumLanes]transport.ConnStats
	if _, ok := pollUntil(limit, func() bool {
		for lane := range routing.Lane(routing.NumLanes) {
			now[lane] = connStatsOf(from, to, lane.String())
			if now[lane].PendingMessages != 0 {
				return false
			}
		}
		return true
	}); !ok {
		for lane := range routing.Lane(routing.NumLanes) {
			t.Errorf("%v to %v, %v lane: still holds %d messages (%d bytes) after %v", from.Health().Node, to, lane, now[lane].PendingMessages, now[lane].PendingBytes, limit)
		}
	}
	return now
}

// peerStatus is from's Health status of peer.
func peerStatus(from *transport.Transport, peer cluster.NodeID) transport.PeerStatus {
	h := from.Health()
	ph, _ := h.Peer(peer)
	return ph.Status
}

// TestNetnsSilentBlackholeHeals: packets between two hosts dropped, both
// ways or one way only, no RST, until both ends redial into the
// blackhole, then the path comes back. Both ends must find their connections dead within
// Keepalive (and 1.5 s of slack), say the peer is down, fail the
// requests written with ErrConnectionReset, and once the path is back:
// say it is up, answer requests, and account for every one-way message
// accepted meanwhile, written or dropped with a reason, nothing left
// pending.
func TestNetnsSilentBlackholeHeals(t *testing.T) {
	requireNft(t)
	for _, tc := range []struct {
		name   string
		script string // nft rules in the switch's bridge forward chain
	}{
		{"both ways", "iifname %[1]q drop\noifname %[1]q drop"},
		{"n1 to n2 only", "oifname %[1]q drop"},
		{"n2 to n1 only", "iifname %[1]q drop"},
	} {
		t.Run(tc.name, func(t *testing.T) { blackholeHeals(t, tc.script) })
	}
}

func blackholeHeals(t *testing.T, rules string) {
	l := newLab(t, 2)
	// Writes may block far longer than Keepalive, and TCP_USER_TIMEOUT
	// (Timeouts.Write) is as long: only the keep-alive checks can find
	// the connections dead in time, even those whose writer is blocked.
	tune := func(cfg *transport.Config) {
		faultConfig(cfg)
		cfg.Timeouts.Write = 20 * time.Second
	}
	n1, n2 := l.startPair(tune)
	var got1, got2 counter
	got1.serve(n1)
	got2.serve(n2)
	id1, id2 := nodeID(1), nodeID(2)

	warmBothWays(t, n1, n2)
	base := settled(t, n1, id2, 5*time.Second)
	backBase := settled(t, n2, id1, 5*time.Second)
	arrived := got2.oneWay.Load() + got2.urgent.Load()

	ld := startLoad(n1, id2, 50*time.Millisecond)
	back := startLoad(n2, id1, 50*time.Millisecond)
	// Traffic in flight on every connection, both ways, before the cut.
	if _, ok := pollUntil(5*time.Second, func() bool { return ld.flowing() && back.flowing() }); !ok {
		t.Fatalf("load never flowed on every lane: %v; %v", ld.lastErr.Load(), back.lastErr.Load())
	}
	var script strings.Builder
	fmt.Fprintf(&script, "add table bridge %[1]s\nadd chain bridge %[1]s forward { type filter hook forward priority 0; policy accept; }\n", partitionTable)
	for _, rule := range strings.Split(fmt.Sprintf(rules, l.port(2)), "\n") {
		fmt.Fprintf(&script, "add rule bridge %s forward %s\n", partitionTable, rule)
	}
	l.nft(script.String())
	cut := time.Now()
	// Requests written after the cut, waiting longer than the detection.
	longs := make(chan error, 2)
	for _, p := range []struct {
		from *transport.Transport
		to   cluster.NodeID
	}{{n1, id2}, {n2, id1}} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*faultKeepalive)
			defer cancel()
			_, err := p.from.Request(ctx, p.to, verbFaultEcho, []byte("long"))
			longs <- err
		}()
	}

	detect := faultKeepalive + 1500*time.Millisecond
	for _, p := range []struct {
		from *transport.Transport
		to   cluster.NodeID
	}{{n1, id2}, {n2, id1}} {
		if _, ok := pollUntil(detect-time.Since(cut), func() bool { return peerStatus(p.from, p.to) == transport.PeerDown }); !ok {
			h := p.from.Health()
			ph, _ := h.Peer(p.to)
			t.Errorf("%v still sees %v as %v %v after the cut (bound %v): %+v", h.Node, p.to, ph.Status, time.Since(cut), detect, ph.Lanes)
		} else {
			t.Logf("%v saw %v down %v after the cut", p.from.Health().Node, p.to, time.Since(cut))
		}
	}
	for range 2 {
		select {
		case err := <-longs:
			if !errors.Is(err, transport.ErrConnectionReset) {
				t.Errorf("a request written into the blackhole failed with %v, not ErrConnectionReset", err)
			} else {
				t.Logf("a long request failed %v after the cut: %v", time.Since(cut), err)
			}
		case <-time.After(detect - time.Since(cut)):
			t.Errorf("a request written into the blackhole still waits %v after the cut", time.Since(cut))
		}
	}
	// Held until both ends redial into it, so that the heal meets dials
	// under way or backing off, not connections never tried again.
	if _, ok := pollUntil(5*time.Second, func() bool { return redialling(n1, id2) && redialling(n2, id1) }); !ok {
		t.Errorf("not redialling across the blackhole %v after the cut: %+v; %+v", time.Since(cut), n1.Health(), n2.Health())
	}
	l.nft(fmt.Sprintf("delete table bridge %s\n", partitionTable))
	healed := time.Now()
	t.Logf("healed after %v; n1's requests: %d ok, %d failed (%v)", healed.Sub(cut), ld.reqOK.Load(), ld.reqErr.Load(), ld.lastErr.Load())

	for _, p := range []struct {
		from *transport.Transport
		to   cluster.NodeID
		ld   *load
	}{{n1, id2, ld}, {n2, id1, back}} {
		before := p.ld.reqOK.Load()
		took, ok := pollUntil(5*time.Second, func() bool {
			return peerStatus(p.from, p.to) == transport.PeerUp && p.ld.reqOK.Load() > before+2
		})
		if !ok {
			h := p.from.Health()
			ph, _ := h.Peer(p.to)
			t.Errorf("%v: %v not back after the heal: status %v, requests ok %d: %v; lanes %+v", h.Node, p.to, ph.Status, p.ld.reqOK.Load()-before, p.ld.lastErr.Load(), ph.Lanes)
		} else {
			t.Logf("%v: %v back %v after the heal", p.from.Health().Node, p.to, took)
		}
	}
	ld.halt()
	back.halt()
	requireAccounted(t, n1, id2, base, ld, 10*time.Second)
	requireAccounted(t, n2, id1, backBase, back, 10*time.Second)
	if _, ok := pollUntil(3*time.Second, func() bool { return got2.urgent.Load()+got2.oneWay.Load() > arrived }); !ok {
		t.Errorf("nothing arrived at n2 after the heal")
	}
}
