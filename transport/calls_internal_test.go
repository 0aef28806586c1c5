package transport

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
)

// TestPooledCallCarriesNoStaleTick: a call reused after its timer fired
// (its response came as it timed out) does not hand that tick to its next
// request, which would fail with an hour to go. It runs under the timers
// of Go before 1.23 (GODEBUG asynctimerchan=1, the default of a main
// module whose go.mod names an older Go; .ci/run runs it so), whose
// Reset keeps a tick already sent: it fails without stopTimer dropping a
// fired timer. Go 1.23's timers discard the tick, so a default build has
// nothing to test.
func TestPooledCallCarriesNoStaleTick(t *testing.T) {
	if !strings.Contains(os.Getenv("GODEBUG"), "asynctimerchan=1") {
		t.Skip("needs GODEBUG=asynctimerchan=1")
	}
	var tab callTable
	c := tab.newCall("n2", routing.Small)
	tab.add(1, c)
	c.startTimer(time.Millisecond)
	tab.complete(1, "n2", callResult{}) // the response arrives...
	deadline := time.Now().Add(10 * time.Second)
	for len(c.timer.C) == 0 { // ...and the timer fires before the requester looks
		if time.Now().After(deadline) {
			t.Fatal("the timer never fired")
		}
		time.Sleep(100 * time.Microsecond)
	}
	<-c.done // request's select takes the response
	c.stopTimer()
	tab.free(c)

	next := tab.newCall("n2", routing.Small)
	select {
	case <-next.startTimer(time.Hour):
		t.Fatal("a request with an hour to go timed out at once: its pooled call's timer delivered the previous request's tick")
	default:
	}
	next.stopTimer()
	tab.free(next)
}

// fillCalls puts n calls to peer "n2" in tab, written round-robin on
// connections 1 to conns, with IDs from first on.
func fillCalls(tab *callTable, first uint64, n, conns int) {
	for i := range n {
		id := first + uint64(i)
		tab.add(id, tab.newCall("n2", routing.Small))
		tab.written(id, uint64(1+i%conns))
	}
}

// TestAConnectionsEndLooksOnlyAtItsOwnCalls: a connection that ends
// fails the calls written on it, and looks at no other call in flight: on
// a node with many requests in flight to many peers, whose connections
// come and go, a scan of every call at every connection's end, under the
// shard locks every Request takes, costs in proportion to all of them.
// Every shard holds, besides the calls of other connections, an entry no
// look may take (a nil call): a look at it panics.
func TestAConnectionsEndLooksOnlyAtItsOwnCalls(t *testing.T) {
	var tab callTable
	const others, dead = 10_000, uint64(1_000)
	fillCalls(&tab, 1, others, 100)
	var own []*call
	for id := uint64(others + 1); id <= others+10; id++ {
		c := tab.newCall("n2", routing.Small)
		tab.add(id, c)
		tab.written(id, dead)
		own = append(own, c)
	}
	for i := range tab.shards {
		tab.shards[i].calls[uint64(1_000_000+i)] = nil
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("the end of a connection with 10 calls looked at calls of others, of %d in flight: %v", others, r)
			}
		}()
		require.True(t, tab.pendingOn(dead))
		tab.failConn(dead, errors.New("reset"))
		require.False(t, tab.pendingOn(dead))
	}()
	for _, c := range own {
		r := <-c.done
		require.ErrorContains(t, r.err, "reset")
	}
	n := 0
	for i := range tab.shards {
		n += len(tab.shards[i].calls)
	}
	require.Equal(t, others+callShards, n, "the calls of other connections stay in flight")
}

// TestTheCallsOfAConnectionAreForgottenWithThem: however a call ends —
// its response, its caller giving up, its peer leaving, its connection
// ending — it leaves nothing in the index of calls by connection, which
// would otherwise grow with every connection a long-running node made.
func TestTheCallsOfAConnectionAreForgottenWithThem(t *testing.T) {
	var tab callTable
	fillCalls(&tab, 1, 1_000, 50)
	for id := uint64(1); id <= 1_000; id++ {
		switch id % 4 {
		case 0:
			_, ok := tab.take(id, "n2")
			require.True(t, ok)
		case 1:
			_, ok := tab.remove(id)
			require.True(t, ok)
		case 2:
			tab.written(id, 10_000+id) // written again on another connection
		}
	}
	tab.failConn(3, errors.New("reset"))
	tab.failPeer(nil, errors.New("closed"))
	for i := range tab.shards {
		require.Empty(t, tab.shards[i].calls)
		require.Empty(t, tab.shards[i].onConn, "shard %d", i)
	}
}

// BenchmarkFailConn measures what a connection's end costs the calls
// table, with few calls of its own (10) among many in flight on other
// connections: its work, done under the locks every Request takes, should
// not grow with those.
func BenchmarkFailConn(b *testing.B) {
	for _, others := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			var tab callTable
			fillCalls(&tab, 1, others, 100)
			id, serial := uint64(others+1), uint64(1_000)
			b.ReportAllocs()
			for b.Loop() {
				own := make([]*call, 10)
				for i := range own {
					own[i] = tab.newCall("n2", routing.Small)
					tab.add(id, own[i])
					tab.written(id, serial)
					id++
				}
				tab.failConn(serial, errors.New("reset"))
				for _, c := range own {
					<-c.done
					tab.free(c)
				}
				serial++
			}
		})
	}
}
