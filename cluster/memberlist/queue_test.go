package memberlist

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

func join(id, addr string) cluster.Event {
	return cluster.Event{Type: cluster.Join, Member: cluster.Member{ID: cluster.NodeID(id), Addr: addr}}
}

func update(id, addr string) cluster.Event {
	return cluster.Event{Type: cluster.Update, Member: cluster.Member{ID: cluster.NodeID(id), Addr: addr}}
}

func leave(id, addr string) cluster.Event {
	return cluster.Event{Type: cluster.Leave, Member: cluster.Member{ID: cluster.NodeID(id), Addr: addr}}
}

func pending(ev cluster.Event, seq uint64) pendingEvent { return pendingEvent{Event: ev, seq: seq} }

func TestEventQueueCoalescing(t *testing.T) {
	const a, b, c = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
	tests := []struct {
		name   string
		pushes []cluster.Event
		want   []pendingEvent
	}{
		{"empty", nil, nil},
		{
			"different members are not merged",
			[]cluster.Event{join("x", a), join("y", b), leave("x", a)},
			[]pendingEvent{pending(leave("x", a), 2), pending(join("y", b), 1)},
		},
		{
			"join then update is a join with the new address",
			[]cluster.Event{join("x", a), update("x", b), update("x", c)},
			[]pendingEvent{pending(join("x", c), 2)},
		},
		{
			"updates merge",
			[]cluster.Event{update("x", a), update("x", b)},
			[]pendingEvent{pending(update("x", b), 1)},
		},
		{
			"update then leave is a leave",
			[]cluster.Event{update("x", b), leave("x", b)},
			[]pendingEvent{pending(leave("x", b), 1)},
		},
		{
			"join then leave is a leave",
			[]cluster.Event{join("x", a), leave("x", a)},
			[]pendingEvent{pending(leave("x", a), 1)},
		},
		{
			"leave then join stays two events",
			[]cluster.Event{leave("x", a), join("x", b)},
			[]pendingEvent{pending(leave("x", a), 0), pending(join("x", b), 1)},
		},
		{
			"leave, join, update merges into the join",
			[]cluster.Event{leave("x", a), join("x", b), update("x", c)},
			[]pendingEvent{pending(leave("x", a), 0), pending(join("x", c), 2)},
		},
		{
			"leave, join, leave is one leave",
			[]cluster.Event{leave("x", a), join("x", b), leave("x", b)},
			[]pendingEvent{pending(leave("x", b), 2)},
		},
		{
			"many restarts stay bounded",
			[]cluster.Event{
				join("x", a), leave("x", a), join("x", b), leave("x", b),
				join("x", c), update("x", a), leave("x", a), join("x", b),
			},
			[]pendingEvent{pending(leave("x", a), 6), pending(join("x", b), 7)},
		},
		{
			"merged event keeps its place",
			[]cluster.Event{update("x", a), join("y", a), update("x", b)},
			[]pendingEvent{pending(update("x", b), 2), pending(join("y", a), 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q eventQueue
			for _, ev := range tt.pushes {
				q.push(ev)
			}
			assert.Equal(t, uint64(len(tt.pushes)), q.nextSeq)
			assert.Equal(t, len(tt.want), q.len())
			var got []pendingEvent
			for ev, ok := q.pop(); ok; ev, ok = q.pop() {
				got = append(got, ev)
			}
			assert.Equal(t, tt.want, got)
			assert.Zero(t, q.len())
		})
	}
}

// TestEventQueueWatchersConverge interleaves random valid changes, watchers
// registering (each with a snapshot of the members, as Watch followed by
// Members gives) and partial draining. Every watcher that applies its events
// as "set" and "delete" to its snapshot must end with the true members, and
// the queue must never hold more than two events per member.
func TestEventQueueWatchersConverge(t *testing.T) {
	for seed := range uint64(100) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			truth := make(map[cluster.NodeID]cluster.Member)
			type view struct {
				from    uint64
				members map[cluster.NodeID]cluster.Member
			}
			var views []*view
			var q eventQueue
			deliver := func(ev pendingEvent) {
				for _, v := range views {
					if ev.seq < v.from {
						continue
					}
					switch ev.Type {
					case cluster.Join, cluster.Update:
						v.members[ev.Member.ID] = ev.Member
					case cluster.Leave:
						delete(v.members, ev.Member.ID)
					}
				}
			}

			for range 300 {
				switch r := rng.IntN(10); {
				case r < 6: // a change, as the delegate would produce it
					id := cluster.NodeID(fmt.Sprintf("n%d", rng.IntN(5)))
					member := cluster.Member{ID: id, Addr: fmt.Sprintf("127.0.0.1:%d", 1+rng.IntN(3))}
					old, known := truth[id]
					switch {
					case !known:
						truth[id] = member
						q.push(cluster.Event{Type: cluster.Join, Member: member})
					case rng.IntN(2) == 0:
						delete(truth, id)
						q.push(cluster.Event{Type: cluster.Leave, Member: old})
					case old != member:
						truth[id] = member
						q.push(cluster.Event{Type: cluster.Update, Member: member})
					}
				case r < 7: // Watch, then Members
					snapshot := make(map[cluster.NodeID]cluster.Member, len(truth))
					for id, m := range truth {
						snapshot[id] = m
					}
					views = append(views, &view{from: q.nextSeq, members: snapshot})
				default: // the dispatcher delivers a few events
					for range rng.IntN(3) {
						if ev, ok := q.pop(); ok {
							deliver(ev)
						}
					}
				}
				perMember := make(map[cluster.NodeID]int)
				for _, ev := range q.pending {
					perMember[ev.Member.ID]++
					require.LessOrEqual(t, perMember[ev.Member.ID], 2, "pending: %v", q.pending)
				}
			}
			for ev, ok := q.pop(); ok; ev, ok = q.pop() {
				deliver(ev)
			}
			for i, v := range views {
				require.Equal(t, truth, v.members, "watcher %d registered at seq %d", i, v.from)
			}
		})
	}
}
