package memberlist

import (
	"io"
	"log"
	"testing"
	"testing/synctest"

	ml "github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// These tests run the dispatcher in a synctest bubble and feed it through
// the delegate, as memberlist would, without a network: synctest.Wait
// returns only once every goroutine is blocked, which makes "stop is still
// waiting" an exact observation rather than a race.

func bubbleMembership(t *testing.T) (*Membership, *delegate) {
	m := newMembership(log.New(io.Discard, "", 0), "127.0.0.1:7000")
	go m.dispatch()
	t.Cleanup(func() {
		close(m.closing)
		<-m.dispatchDone
	})
	return m, (*delegate)(m)
}

func mlNode(id, addr string) *ml.Node {
	return &ml.Node{Name: id, Meta: encodeMeta(addr)}
}

func TestWatchStopWaitsForCallbackSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, d := bubbleMembership(t)
		release := make(chan struct{})
		var calls []cluster.Event // fn runs one call at a time; read after stop
		stop := m.Watch(func(ev cluster.Event) {
			calls = append(calls, ev)
			<-release
		})

		d.NotifyJoin(mlNode("a", "127.0.0.1:7001"))
		synctest.Wait() // fn is blocked on release

		stopDone := make(chan struct{})
		go func() {
			defer close(stopDone)
			stop()
		}()
		d.NotifyJoin(mlNode("b", "127.0.0.1:7002")) // queued, not blocking
		synctest.Wait()                             // everyone is blocked: stop waits for fn
		select {
		case <-stopDone:
			t.Fatal("stop returned while the callback was running")
		default:
		}

		close(release)
		<-stopDone
		stop() // safe twice
		d.NotifyJoin(mlNode("c", "127.0.0.1:7003"))
		synctest.Wait()
		require.NotEmpty(t, calls)
		assert.Equal(t, cluster.NodeID("a"), calls[0].Member.ID)
		assert.LessOrEqual(t, len(calls), 2, "b may race with stop; c came after stop returned")
		for _, ev := range calls {
			assert.NotEqual(t, cluster.NodeID("c"), ev.Member.ID)
		}
	})
}

// TestWatchDeliversInOrderFromNowOnSynctest lets the dispatcher drain
// after every change (no backlog, so nothing is merged): each watcher gets
// exactly the changes made after its Watch call, in order.
func TestWatchDeliversInOrderFromNowOnSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, d := bubbleMembership(t)
		d.NotifyJoin(mlNode("a", "127.0.0.1:7001")) // before Watch: not delivered
		synctest.Wait()
		var early, late []cluster.Event
		stopEarly := m.Watch(func(ev cluster.Event) { early = append(early, ev) })
		defer stopEarly()
		d.NotifyJoin(mlNode("b", "127.0.0.1:7002"))
		synctest.Wait()
		d.NotifyUpdate(mlNode("a", "127.0.0.1:8001"))
		synctest.Wait()
		stopLate := m.Watch(func(ev cluster.Event) { late = append(late, ev) })
		defer stopLate()
		d.NotifyUpdate(mlNode("a", "127.0.0.1:8001")) // no change: no event
		d.NotifyLeave(mlNode("b", ""))
		synctest.Wait()
		d.NotifyJoin(mlNode("b", "127.0.0.1:9002"))
		synctest.Wait()

		a2 := cluster.Member{ID: "a", Addr: "127.0.0.1:8001"}
		b1 := cluster.Member{ID: "b", Addr: "127.0.0.1:7002"}
		b2 := cluster.Member{ID: "b", Addr: "127.0.0.1:9002"}
		assert.Equal(t, []cluster.Event{
			{Type: cluster.Join, Member: b1},
			{Type: cluster.Update, Member: a2},
			{Type: cluster.Leave, Member: b1},
			{Type: cluster.Join, Member: b2},
		}, early)
		assert.Equal(t, []cluster.Event{
			{Type: cluster.Leave, Member: b1},
			{Type: cluster.Join, Member: b2},
		}, late)
		assert.Equal(t, []cluster.Member{a2, b2}, m.Members())
	})
}

// TestWatchMergesBacklogSynctest queues changes while the dispatcher is
// busy with a blocked watcher; the backlog is merged per member and a
// watcher registered in the middle still converges.
func TestWatchMergesBacklogSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, d := bubbleMembership(t)
		release := make(chan struct{})
		var early, late []cluster.Event
		stopEarly := m.Watch(func(ev cluster.Event) {
			early = append(early, ev)
			if ev.Member.ID == "blocker" {
				<-release
			}
		})
		defer stopEarly()
		d.NotifyJoin(mlNode("blocker", "127.0.0.1:7009"))
		synctest.Wait() // the dispatcher is stuck in early's callback

		d.NotifyJoin(mlNode("a", "127.0.0.1:7001"))
		d.NotifyJoin(mlNode("b", "127.0.0.1:7002"))
		stopLate := m.Watch(func(ev cluster.Event) { late = append(late, ev) }) // knows a and b from Members
		defer stopLate()
		d.NotifyUpdate(mlNode("a", "127.0.0.1:8001"))
		d.NotifyLeave(mlNode("b", ""))
		close(release)
		synctest.Wait()

		blocker := cluster.Member{ID: "blocker", Addr: "127.0.0.1:7009"}
		a2 := cluster.Member{ID: "a", Addr: "127.0.0.1:8001"}
		b := cluster.Member{ID: "b", Addr: "127.0.0.1:7002"}
		assert.Equal(t, []cluster.Event{
			{Type: cluster.Join, Member: blocker},
			{Type: cluster.Join, Member: a2}, // Join + Update
			{Type: cluster.Leave, Member: b}, // Join + Leave: a Leave for a member early never saw
		}, early)
		assert.Equal(t, []cluster.Event{
			{Type: cluster.Join, Member: a2}, // a Join for a member late already knew
			{Type: cluster.Leave, Member: b},
		}, late)
	})
}

// TestSlowWatcherCoalescesSynctest blocks the only watcher while one member
// changes many times: the queue stays bounded, memberlist's callbacks never
// block, and the watcher ends with the latest state.
func TestSlowWatcherCoalescesSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, d := bubbleMembership(t)
		release := make(chan struct{})
		state := map[cluster.NodeID]cluster.Member{}
		stop := m.Watch(func(ev cluster.Event) {
			<-release
			switch ev.Type {
			case cluster.Join, cluster.Update:
				state[ev.Member.ID] = ev.Member
			case cluster.Leave:
				delete(state, ev.Member.ID)
			}
		})
		defer stop()

		d.NotifyJoin(mlNode("x", "127.0.0.1:7000"))
		synctest.Wait() // the watcher holds the first event
		for i := range 1000 {
			d.NotifyLeave(mlNode("x", ""))
			d.NotifyJoin(mlNode("x", "127.0.0.1:"+string(rune('1'+i%9))+"000"))
		}
		m.mu.Lock()
		pending := m.queue.len()
		m.mu.Unlock()
		assert.LessOrEqual(t, pending, 2)

		close(release)
		synctest.Wait()
		assert.Equal(t, map[cluster.NodeID]cluster.Member{"x": {ID: "x", Addr: "127.0.0.1:1000"}}, state)
	})
}
