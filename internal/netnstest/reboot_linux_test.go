package netnstest

import (
	"os/exec"
	"testing"
	"time"

	"github.com/internode/internode/transport"
)

// TestNetnsPeerRebootedBehindADeadLinkIsReplaced: n2 "reboots" while its
// link is down: its transport closes, and its sockets vanish without a FIN
// or RST reaching n1, so n1 holds half-open connections to and from it. A
// fresh n2 starts on the same address and the link comes back within
// Timeouts.Keepalive. n1's next packets on the old connections meet RSTs:
// the old connections must be replaced at once, and traffic both ways
// resume well within Keepalive, not after it.
func TestNetnsPeerRebootedBehindADeadLinkIsReplaced(t *testing.T) {
	requireNetns(t)
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skipf("needs iproute2's ss: %v", err)
	}
	l := newLab(t, 2)
	// Keep-alive checks that would find the old connections dead only
	// 4.5 s after the link comes back.
	const keepalive = 5 * time.Second
	tune := func(cfg *transport.Config) {
		faultConfig(cfg)
		cfg.Timeouts.Keepalive = keepalive
	}
	n1, n2 := l.startPair(tune)
	var got1, old counter
	got1.serve(n1)
	old.serve(n2)
	id1, id2 := nodeID(1), nodeID(2)
	warmBothWays(t, n1, n2)

	l.setPort(2, false)
	down := time.Now()
	n2.Close()
	// What is left of its sockets goes too, its RSTs lost on the dead
	// link: n1's connections to and from it are half-open.
	if out, err := exec.Command("ip", "netns", "exec", l.namespace(2), "ss", "-K", "-t").CombinedOutput(); err != nil {
		t.Logf("ss -K: %v: %s", err, out)
	}
	n2 = l.startTransport(2, tune)
	var got2 counter
	got2.serve(n2)
	time.Sleep(time.Until(down.Add(500 * time.Millisecond)))
	l.setPort(2, true)
	up := time.Now()

	ld := startLoad(n1, id2, 20*time.Millisecond)
	back := startLoad(n2, id1, 20*time.Millisecond)
	defer ld.halt()
	defer back.halt()
	// The old connections' next retransmission meets an RST; not the
	// keep-alive checks, which would take Keepalive.
	limit := 2 * time.Second
	for _, p := range []struct {
		name string
		ld   *load
	}{{"n1 to n2", ld}, {"n2 to n1", back}} {
		if took, ok := pollUntil(limit-time.Since(up), func() bool { return p.ld.reqOK.Load() > 0 }); !ok {
			t.Errorf("%s: no request answered %v after the link came back (%d failed: %v)", p.name, time.Since(up), p.ld.reqErr.Load(), p.ld.lastErr.Load())
		} else {
			t.Logf("%s: first request answered %v after the link came back", p.name, took)
		}
	}
	for _, c := range []struct {
		name string
		got  func() uint64
	}{{"urgent at n2", got2.urgent.Load}, {"one-way at n2", got2.oneWay.Load}, {"urgent at n1", got1.urgent.Load}} {
		if _, ok := pollUntil(limit-time.Since(up), func() bool { return c.got() > 0 }); !ok {
			t.Errorf("%s: nothing arrived %v after the link came back", c.name, time.Since(up))
		}
	}
	h := n1.Health()
	if ph, _ := h.Peer(id2); ph.Status != transport.PeerUp {
		t.Errorf("n1 sees n2 as %v after traffic resumed: %+v", ph.Status, ph.Lanes)
	}
}
