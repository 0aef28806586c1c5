package netnstest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// The tests of this file run every transport in the test process, each
// one's sockets in its node's namespace of a lab: a socket belongs to the
// namespace of the thread that made it, so each listener and each dialled
// connection is made on a thread that entered the node's namespace and
// then exits with it.

// inNamespace runs f on an OS thread of its own in ns's network namespace.
// The thread is not given back to the runtime: its goroutine exits locked,
// which ends the thread.
func inNamespace(ns string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}

// nsDialer dials from a namespace.
type nsDialer struct{ ns string }

func (d nsDialer) DialContext(ctx context.Context, network, address string) (conn net.Conn, err error) {
	if nsErr := inNamespace(d.ns, func() {
		var nd net.Dialer
		conn, err = nd.DialContext(ctx, network, address)
	}); nsErr != nil {
		return nil, nsErr
	}
	return conn, err
}

// nsListen returns a Config.Listen that binds in ns.
func nsListen(ns string) func(network, address string) (net.Listener, error) {
	return func(network, address string) (l net.Listener, err error) {
		if nsErr := inNamespace(ns, func() { l, err = net.Listen(network, address) }); nsErr != nil {
			return nil, nsErr
		}
		return l, err
	}
}

// requireNft skips the test unless the netns tests run (requireNetns)
// and nft is installed: it cuts the lab's traffic with nft rules.
func requireNft(t *testing.T) {
	t.Helper()
	requireNetns(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("needs nft (Debian package nftables): %v", err)
	}
}

// startPair runs nodes 1 and 2 of l (startTransport), each tuned by tune.
func (l *lab) startPair(tune func(*transport.Config)) (n1, n2 *transport.Transport) {
	return l.startTransport(1, tune), l.startTransport(2, tune)
}

// warmBothWays sends n1's and n2's load (startLoad) to each other in
// turn until each finds the other up and has had requests answered:
// every lane connected and heard, both ways.
func warmBothWays(t *testing.T, n1, n2 *transport.Transport) {
	t.Helper()
	for _, p := range []struct {
		from *transport.Transport
		to   cluster.NodeID
	}{{n1, nodeID(2)}, {n2, nodeID(1)}} {
		ld := startLoad(p.from, p.to, 20*time.Millisecond)
		_, ok := pollUntil(5*time.Second, func() bool { return peerStatus(p.from, p.to) == transport.PeerUp && ld.reqOK.Load() > 3 })
		ld.halt()
		if !ok {
			t.Fatalf("%v never up to %v: %v", p.from.Health(), p.to, ld.lastErr.Load())
		}
	}
}

// nodeAddr is node i's transport address in the lab.
func (l *lab) nodeAddr(i int) string { return net.JoinHostPort(l.nodeIP(i), "7000") }

// nodeID is node i's ID.
func nodeID(i int) cluster.NodeID { return cluster.NodeID(fmt.Sprintf("n%d", i)) }

// labMembers is every node of l as a member.
func (l *lab) labMembers() []cluster.Member {
	var ms []cluster.Member
	for i := range l.nodes {
		ms = append(ms, cluster.Member{ID: nodeID(i + 1), Addr: l.nodeAddr(i + 1)})
	}
	return ms
}

// startTransport runs node i's transport in the test process, its sockets
// in node i's namespace, with the lab's nodes as a static membership; tune
// may change its config. Close is the caller's (a cleanup closes it too).
func (l *lab) startTransport(i int, tune func(*transport.Config)) *transport.Transport {
	l.t.Helper()
	cfg := transport.DefaultConfig()
	cfg.NodeID = nodeID(i)
	cfg.ClusterName = "netns"
	cfg.ListenAddr = l.nodeAddr(i)
	cfg.Membership = cluster.NewStatic(l.labMembers()...)
	cfg.Dialer = nsDialer{l.namespace(i)}
	cfg.Listen = nsListen(l.namespace(i))
	if tune != nil {
		tune(&cfg)
	}
	tr, err := transport.New(cfg)
	if err != nil {
		l.t.Fatalf("node %d: %v", i, err)
	}
	tr.Start()
	l.t.Cleanup(func() { tr.Close() })
	return tr
}

// connStatsOf is from's ConnStats of peer's lane.
func connStatsOf(tr *transport.Transport, peer cluster.NodeID, lane string) transport.ConnStats {
	for _, c := range tr.Stats().Conns {
		if c.Peer == peer && c.Lane.String() == lane {
			return c
		}
	}
	return transport.ConnStats{}
}

// sumReasons adds up counts by reason.
func sumReasons(r [transport.NumReasons]uint64) (n uint64) {
	for _, c := range r {
		n += c
	}
	return n
}

// pollUntil polls cond every pollInterval until it holds or limit passes,
// and says whether it held and how long it took.
func pollUntil(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(pollInterval)
	}
}
