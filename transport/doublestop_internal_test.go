package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// stuckDialer holds every dial to addr, whatever its context says, until
// release is closed; dials elsewhere are refused.
type stuckDialer struct {
	addr    string
	release chan struct{}
}

func (d *stuckDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if address == d.addr {
		<-d.release
	}
	return nil, errors.New("refused")
}

// goroutinesIn reports whether some goroutine has in on its stack. It
// reads the stacks, which orders nothing between goroutines for the race
// detector.
func goroutinesIn(in string) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Contains(string(buf[:n]), in)
}

// TestCloseAndTheJanitorDoNotBothStopAnEntry: Close lists the peers, then
// stops them one by one; a janitor's sweep meanwhile (Close closes
// t.closed, which ends the janitor, only between sweeps) forgot a quiet
// entry Close had listed and not yet reached, and stopped it; Close then
// stopped it again. The two stops ran the part that only the writer's
// successor may run (failing the large writer's messages, closing the
// connection) on the same lane from two goroutines at once: a data race.
func TestCloseAndTheJanitorDoNotBothStopAnEntry(t *testing.T) {
	for attempt := 0; ; attempt++ {
		if runCloseAndJanitor(t) {
			return
		}
		// An attempt shows nothing when Close reaches the entries before
		// the janitor does, more often on a loaded machine.
		require.Less(t, attempt, 100, "Close never reached a forgettable entry after the held one")
	}
}

// runCloseAndJanitor reports false when Close stopped every forgettable
// entry before the held one (map order), and the attempt showed nothing.
func runCloseAndJanitor(t *testing.T) bool {
	const held = "127.0.0.1:3"
	dialer := &stuckDialer{addr: held, release: make(chan struct{})}
	static := cluster.NewStatic(cluster.Member{ID: "x", Addr: held})
	const nLeft = 6
	for i := range nLeft {
		static.Add(cluster.Member{ID: cluster.NodeID(fmt.Sprint("n", i)), Addr: "127.0.0.1:1"})
	}
	members := &hookedMembership{Static: static}
	cfg := DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = "me", "test", "127.0.0.1:0"
	cfg.Membership = members
	cfg.Dialer = dialer
	cfg.Telemetry.Logger = discardLogger
	cfg.Telemetry.DisableSocketMeasurement = true
	tr, err := newTransport(cfg, newIdleListener())
	require.NoError(t, err)
	closed := make(chan struct{})
	defer func() {
		select {
		case <-closed:
		default:
			close(dialer.release)
			tr.Close()
		}
	}()

	// Entries of members that left right after a Send looked them up
	// (TestAMemberThatLeftDuringASendIsForgotten), each with a lane: the
	// janitor forgets them once quiet.
	var left []*peer
	for i := range nLeft {
		id := cluster.NodeID(fmt.Sprint("n", i))
		members.arm(id, func() { static.Remove(id) })
		_ = tr.Send(context.Background(), id, 1, []byte("x"))
		p := tr.peerStats(id)
		require.NotNil(t, p)
		left = append(left, p)
	}
	require.Eventually(t, func() bool {
		for _, p := range left {
			if !p.quiet() {
				return false
			}
		}
		return true
	}, 5*time.Second, time.Millisecond)
	// A member whose lane dials, held: its stop waits for its writer.
	require.NoError(t, tr.Send(context.Background(), "x", 1, []byte("x")))
	require.True(t, waitUntil(func() bool { return goroutinesIn("stuckDialer).DialContext") }))

	go func() {
		tr.Close()
		close(closed)
	}()
	require.True(t, waitUntil(func() bool {
		return goroutinesIn("transport.(*Transport).Close") && goroutinesIn("transport.(*peer).stop")
	}))
	var pending []*peer
	for _, p := range left {
		if p.stopErrIfStopped() == nil {
			pending = append(pending, p) // listed by Close, not reached yet
		}
	}
	if len(pending) == 0 {
		return false
	}
	// The janitor sweeps, and Close goes on, at once.
	go tr.forgetQuietStrangers()
	close(dialer.release)
	<-closed
	require.True(t, waitUntil(func() bool { return !goroutinesIn("forgetQuietStrangers") }))
	for _, p := range pending {
		if p.stopErrIfStopped() == errForgotten {
			return true // the janitor forgot an entry Close had listed: both stopped it
		}
	}
	return false // Close reached them first
}
