package memberlist

import (
	"bytes"
	"log"
	"net"
	"strings"
	"testing"

	ml "github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/wire"
)

// TestDelegateObserve drives the delegate's callbacks directly, as
// memberlist would, and checks the member map and the queued events. Paths
// that real gossip rarely produces (metadata turning malformed, an empty
// name) are covered here; the gossip itself is covered in membership_test.go.
func TestDelegateObserve(t *testing.T) {
	node := func(name, addr string) *ml.Node {
		n := &ml.Node{Name: name, Addr: net.IPv4(127, 0, 0, 1), Port: 7946}
		if addr != "" {
			n.Meta = encodeMeta(addr)
		}
		return n
	}
	malformed := func(name string) *ml.Node {
		n := node(name, "")
		n.Meta = []byte("role=cache")
		return n
	}
	x1 := cluster.Member{ID: "x", Addr: "127.0.0.1:7001"}
	x2 := cluster.Member{ID: "x", Addr: "127.0.0.1:7002"}

	type call struct {
		notify func(d *delegate, n *ml.Node)
		node   *ml.Node
	}
	join := func(n *ml.Node) call { return call{(*delegate).NotifyJoin, n} }
	upd := func(n *ml.Node) call { return call{(*delegate).NotifyUpdate, n} }
	leave := func(n *ml.Node) call { return call{(*delegate).NotifyLeave, n} }

	tests := []struct {
		name        string
		calls       []call
		wantEvents  []cluster.Event
		wantMembers []cluster.Member
		wantLogged  bool
	}{
		{
			name:        "join",
			calls:       []call{join(node("x", x1.Addr))},
			wantEvents:  []cluster.Event{{Type: cluster.Join, Member: x1}},
			wantMembers: []cluster.Member{x1},
		},
		{
			name:        "update of the address",
			calls:       []call{join(node("x", x1.Addr)), upd(node("x", x2.Addr))},
			wantEvents:  []cluster.Event{{Type: cluster.Join, Member: x2}}, // merged: not yet delivered
			wantMembers: []cluster.Member{x2},
		},
		{
			name:        "update with the same address is silent",
			calls:       []call{join(node("x", x1.Addr)), upd(node("x", x1.Addr))},
			wantEvents:  []cluster.Event{{Type: cluster.Join, Member: x1}},
			wantMembers: []cluster.Member{x1},
		},
		{
			name:        "leave",
			calls:       []call{join(node("x", x1.Addr)), leave(node("x", x1.Addr))},
			wantEvents:  []cluster.Event{{Type: cluster.Leave, Member: x1}},
			wantMembers: []cluster.Member{},
		},
		{
			name: "graceful leave",
			calls: []call{join(node("x", x1.Addr)), leave(func() *ml.Node {
				n := node("x", "")
				n.Meta = encodeLeavingMeta(x1.Addr)
				return n
			}())},
			wantEvents:  []cluster.Event{{Type: cluster.Leave, Member: x1}},
			wantMembers: []cluster.Member{},
		},
		{
			name:        "leaving flag gossiped before the leave is silent",
			calls:       []call{join(node("x", x1.Addr)), upd(func() *ml.Node { n := node("x", ""); n.Meta = encodeLeavingMeta(x1.Addr); return n }())},
			wantEvents:  []cluster.Event{{Type: cluster.Join, Member: x1}},
			wantMembers: []cluster.Member{x1},
		},
		{
			name:        "leave of an unknown node is silent",
			calls:       []call{leave(node("y", x1.Addr))},
			wantEvents:  nil,
			wantMembers: []cluster.Member{},
		},
		{
			name:        "join with malformed metadata is ignored",
			calls:       []call{join(malformed("x")), leave(malformed("x"))},
			wantEvents:  nil,
			wantMembers: []cluster.Member{},
			wantLogged:  true,
		},
		{
			name:        "join without metadata is ignored",
			calls:       []call{join(node("x", ""))},
			wantEvents:  nil,
			wantMembers: []cluster.Member{},
			wantLogged:  true,
		},
		{
			name:        "join without a name is ignored",
			calls:       []call{join(node("", x1.Addr))},
			wantEvents:  nil,
			wantMembers: []cluster.Member{},
			wantLogged:  true,
		},
		{
			name:        "join with a name longer than a handshake carries is ignored",
			calls:       []call{join(node(strings.Repeat("x", wire.MaxNameLength+1), x1.Addr))},
			wantEvents:  nil,
			wantMembers: []cluster.Member{},
			wantLogged:  true,
		},
		{
			name:        "metadata turning malformed is a leave",
			calls:       []call{join(node("x", x1.Addr)), upd(malformed("x"))},
			wantEvents:  []cluster.Event{{Type: cluster.Leave, Member: x1}},
			wantMembers: []cluster.Member{},
			wantLogged:  true,
		},
		{
			name:        "metadata turning valid is a join",
			calls:       []call{join(malformed("x")), upd(node("x", x2.Addr))},
			wantEvents:  []cluster.Event{{Type: cluster.Join, Member: x2}},
			wantMembers: []cluster.Member{x2},
			wantLogged:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged bytes.Buffer
			m := newMembership(log.New(&logged, "", 0), "127.0.0.1:7000")
			for _, c := range tt.calls {
				c.notify((*delegate)(m), c.node)
			}
			var events []cluster.Event
			for ev, ok := m.queue.pop(); ok; ev, ok = m.queue.pop() {
				events = append(events, ev.Event)
			}
			assert.Equal(t, tt.wantEvents, events)
			assert.Equal(t, tt.wantMembers, m.Members())
			assert.Equal(t, tt.wantLogged, logged.Len() > 0, logged.String())
			assert.Equal(t, len(tt.wantEvents) > 0, len(m.wake) == 1, "dispatcher woken")
		})
	}
}

func TestDelegateIgnoresCallbacksAfterClose(t *testing.T) {
	m := newMembership(log.New(&bytes.Buffer{}, "", 0), "127.0.0.1:7000")
	d := (*delegate)(m)
	d.NotifyJoin(&ml.Node{Name: "x", Meta: encodeMeta("127.0.0.1:7001")})
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	d.NotifyLeave(&ml.Node{Name: "x"})
	assert.Equal(t, []cluster.Member{{ID: "x", Addr: "127.0.0.1:7001"}}, m.Members())
	assert.Equal(t, 1, m.queue.len())
}

func TestDelegateNodeMeta(t *testing.T) {
	m := newMembership(log.New(&bytes.Buffer{}, "", 0), "127.0.0.1:7000")
	d := (*delegate)(m)
	assert.Equal(t, encodeMeta("127.0.0.1:7000"), d.NodeMeta(ml.MetaMaxSize))
	assert.Nil(t, d.NodeMeta(3), "never more than memberlist's limit")
}
