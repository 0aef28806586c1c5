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

// statsFromFactory returns a coalescing factory that, once armed, reads
// the transport's Stats as it makes a strategy, and records whether that
// read could not finish while the factory waited for it. A factory that
// called Stats itself would hang for good; the read is made on another
// goroutine, bounded, so that the test fails rather than hangs.
func statsFromFactory(tr *atomic.Pointer[Transport], armed, stuck *atomic.Bool) func(routing.Lane) coalescing.Strategy {
	return func(lane routing.Lane) coalescing.Strategy {
		if armed.Load() {
			if !statsReturns(tr.Load()) {
				stuck.Store(true)
			}
		}
		return DefaultCoalescing(lane)
	}
}

// TestACoalescingFactoryMayReadStats: Stats now takes each peer's mu
// (laneStats), and the transport calls the coalescing factory with that
// mu held: making a lane (peer.lane → newOutConn) and SetCoalescing. A
// factory that reads Stats — to log or to seed its strategy from the
// lane's figures — deadlocked; it did not before.
func TestACoalescingFactoryMayReadStats(t *testing.T) {
	var tr atomic.Pointer[Transport]
	var armed, stuck atomic.Bool
	factory := statsFromFactory(&tr, &armed, &stuck)
	n2 := startNode(t, "n2", cluster.NewStatic(), nil)
	n1 := startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}),
		func(c *Config) { c.Lanes.Coalescing = factory })
	tr.Store(n1)
	armed.Store(true)

	t.Run("a new lane", func(t *testing.T) {
		require.NoError(t, n1.Send(context.Background(), "n2", 1, []byte("x")))
		assert.False(t, stuck.Load(), "Stats, called from the factory making a lane, did not return")
	})
	t.Run("SetCoalescing", func(t *testing.T) {
		stuck.Store(false)
		n1.SetCoalescing(factory)
		assert.False(t, stuck.Load(), "Stats, called from SetCoalescing's factory, did not return")
	})
}

// blockedInPeerFor reports whether some goroutine waits to take peersMu
// for writing in peerFor (a Send to a peer this node has no entry for).
func blockedInPeerFor() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "sync.(*RWMutex).Lock") && strings.Contains(g, "transport.(*Transport).peerFor") {
			return true
		}
	}
	return false
}

// TestASetCoalescingFactoryMayReadStatsWhileAPeerIsAdded: SetCoalescing
// calls the factory with peersMu read-locked. Stats read-locks peersMu
// too; a read lock waits behind a writer that waits (sync.RWMutex), so a
// factory that reads Stats while a Send to a new peer waits to add its
// entry (peerFor) deadlocks: the writer waits for SetCoalescing, Stats
// for the writer, SetCoalescing for Stats.
func TestASetCoalescingFactoryMayReadStatsWhileAPeerIsAdded(t *testing.T) {
	var tr atomic.Pointer[Transport]
	var armed, stuck atomic.Bool
	var fired atomic.Bool
	sent := make(chan error, 1)
	factory := func(lane routing.Lane) coalescing.Strategy {
		if armed.Load() && fired.CompareAndSwap(false, true) {
			func() {
				go func() { sent <- tr.Load().Send(context.Background(), "n3", 1, []byte("x")) }()
				deadline := time.Now().Add(10 * time.Second)
				for len(sent) == 0 && !blockedInPeerFor() && time.Now().Before(deadline) { // blocked, or through (not blocked: fixed)
					runtime.Gosched()
				}
				if !statsReturns(tr.Load()) {
					stuck.Store(true)
				}
			}()
		}
		return DefaultCoalescing(lane)
	}
	n2 := startNode(t, "n2", cluster.NewStatic(), nil)
	n3 := startNode(t, "n3", cluster.NewStatic(), nil)
	n1 := startNode(t, "n1", cluster.NewStatic(
		cluster.Member{ID: "n2", Addr: n2.Addr().String()},
		cluster.Member{ID: "n3", Addr: n3.Addr().String()}),
		func(c *Config) { c.Lanes.Coalescing = factory })
	tr.Store(n1)
	require.NoError(t, n1.Send(context.Background(), "n2", 1, []byte("x"))) // n2's entry and a lane
	armed.Store(true)
	n1.SetCoalescing(factory)
	assert.False(t, stuck.Load(), "Stats, called from SetCoalescing's factory while a peer was being added, did not return")
	require.NoError(t, <-sent)
}

// statsReturns reports whether t.Stats returns within 5 s. It reads on
// another goroutine, so that a test of a deadlock fails rather than hangs.
func statsReturns(t *Transport) bool {
	done := make(chan struct{})
	go func() {
		_ = t.Stats()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}
