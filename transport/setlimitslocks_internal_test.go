package transport

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
)

// blockedIn reports whether some goroutine is parked in state ("sync.Mutex.Lock"
// say, as its stack's header shows it) with in on its stack.
func blockedIn(state, in string) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "["+state) && strings.Contains(g, in) {
			return true
		}
	}
	return false
}

// waitUntil polls cond for at most 10 s and reports whether it held.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// TestALeaveDuringSetLimitsDoesNotDeadlockAFactoryReadingStats: SetLimits
// read-locked peersMu and, under it, took each peer's mu, which is held
// while a lane is made and the coalescing factory (user code, which may
// read Stats: TestACoalescingFactoryMayReadStats) runs. A Leave that came
// meanwhile waited to lock peersMu for writing (membershipChanged), and a
// read lock waits behind a writer that waits: Stats, called from the
// factory, waited for the Leave, the Leave for SetLimits, SetLimits for
// the factory. Send, Stats, the membership's watcher, the janitor and
// Close then hung for good. The janitor's sweep, which write-locks
// peersMu every two seconds, does as well as a Leave.
func TestALeaveDuringSetLimitsDoesNotDeadlockAFactoryReadingStats(t *testing.T) {
	var tr atomic.Pointer[Transport]
	var armed, fired, stuck atomic.Bool
	limitsSet := make(chan error, 1)
	left := make(chan struct{})
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"}, cluster.Member{ID: "n3", Addr: "127.0.0.1:1"})
	factory := func(lane routing.Lane) coalescing.Strategy {
		if armed.Load() && fired.CompareAndSwap(false, true) {
			n1 := tr.Load()
			// SetLimits, then a Leave, while this lane is made (its
			// peer's mu held).
			go func() { limitsSet <- n1.SetLimits(n1.cfg.Memory.Outbound, n1.cfg.Memory.Inbound) }()
			if !waitUntil(func() bool {
				return len(limitsSet) > 0 || blockedIn("sync.Mutex.Lock", "transport.(*Transport).SetLimits")
			}) {
				t.Error("SetLimits neither returned nor waited")
			}
			go func() {
				static.Remove("n3")
				close(left)
			}()
			if !waitUntil(func() bool {
				select {
				case <-left:
					return true
				default:
				}
				return blockedIn("sync.RWMutex.Lock", "transport.(*Transport).membershipChanged")
			}) {
				t.Error("the Leave neither returned nor waited")
			}
			if !statsReturns(n1) {
				stuck.Store(true)
			}
		}
		return DefaultCoalescing(lane)
	}
	n1 := coreTransport(t, func(c *Config) {
		c.Membership = static
		c.Lanes.Coalescing = factory
	})
	tr.Store(n1)
	armed.Store(true)
	require.NoError(t, n1.Send(context.Background(), "n2", 1, []byte("x"))) // makes n2's entry and a lane
	require.True(t, fired.Load())
	assert.False(t, stuck.Load(), "Stats, called from the factory making a lane, did not return during a SetLimits and a Leave")
	require.NoError(t, <-limitsSet)
	<-left
}

// TestTheJanitorDoesNotDeadlockAFactoryReadingStats: the janitor's sweep
// write-locked peersMu and, under it, took the mu of each entry it might
// forget (retireIfQuiet): a stranger's, or a member's that the membership
// no longer has, whose Leave is on its way. That mu is held while the
// coalescing factory runs (making a lane, SetCoalescing); a factory that
// reads Stats waited for peersMu, held by the janitor, which waited for
// the mu: Send, Stats, the janitor and Close hung for good.
func TestTheJanitorDoesNotDeadlockAFactoryReadingStats(t *testing.T) {
	var tr atomic.Pointer[Transport]
	var armed, fired, stuck atomic.Bool
	swept := make(chan struct{})
	factory := func(lane routing.Lane) coalescing.Strategy {
		if armed.Load() && fired.CompareAndSwap(false, true) {
			n1 := tr.Load()
			go func() {
				n1.forgetQuietStrangers()
				close(swept)
			}()
			if !waitUntil(func() bool {
				select {
				case <-swept:
					return true
				default:
				}
				return blockedIn("sync.Mutex.Lock", "transport.(*peer).retireIfQuiet")
			}) {
				t.Error("the sweep neither returned nor waited")
			}
			if !statsReturns(n1) {
				stuck.Store(true)
			}
		}
		return DefaultCoalescing(lane)
	}
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
	members := &hookedMembership{Static: static}
	n1 := coreTransport(t, func(c *Config) {
		c.Membership = members
		c.Lanes.Coalescing = factory
	})
	tr.Store(n1)
	// n2 leaves right after a Send looked it up: its entry, with a lane,
	// is a member's the membership no longer has, which the janitor
	// forgets once quiet (TestAMemberThatLeftDuringASendIsForgotten).
	members.arm("n2", func() { static.Remove("n2") })
	_ = n1.Send(context.Background(), "n2", 1, []byte("x"))
	p := n1.peerStats("n2")
	require.NotNil(t, p)
	require.Eventually(t, p.quiet, 5*time.Second, time.Millisecond)

	armed.Store(true)
	n1.SetCoalescing(factory) // the factory runs for n2's lane, under its mu
	require.True(t, fired.Load())
	assert.False(t, stuck.Load(), "Stats, called from the factory, did not return during the janitor's sweep")
	<-swept
}
