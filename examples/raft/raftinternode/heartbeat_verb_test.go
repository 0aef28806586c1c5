package raftinternode

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestHeartbeatVerbTakesOnlyHeartbeats: raft's heartbeat handler runs
// appendEntries outside raft's main goroutine, which raft allows only for
// a heartbeat (appendEntries "must only be called from the main thread":
// with entries it stores them and, with a commit index, applies them
// beside the main loop). NetworkTransport sends an AppendEntries there
// only when its content is a heartbeat's; this adapter sent whatever came
// on the heartbeat verb, trusting the sender's choice of verb, so an
// AppendEntries with entries and a commit index on it — from a peer that
// is buggy, hostile, or a later version that draws the line elsewhere —
// went to the heartbeat handler. Before the fix this failed with "an
// AppendEntries with 1 entries and commit index 2 went to the heartbeat
// handler".
func TestHeartbeatVerbTakesOnlyHeartbeats(t *testing.T) {
	opts := Options{}
	c := transporttest.New(t, 2, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	follower := New(c.Nodes[1], opts)
	t.Cleanup(func() { _ = follower.Close() })
	viaHeartbeat := make(chan *raft.AppendEntriesRequest, 1)
	follower.SetHeartbeatHandler(func(rpc raft.RPC) {
		viaHeartbeat <- rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	})
	viaConsumer := make(chan *raft.AppendEntriesRequest, 1)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case rpc := <-follower.Consumer():
			viaConsumer <- rpc.Command.(*raft.AppendEntriesRequest)
			rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
		case <-stop:
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{Addr: []byte("n1")}, Term: 1,
		PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 2,
		Entries: []*raft.Log{{Index: 2, Term: 1, Data: []byte("x")}},
	}
	payload, err := encodeAppend(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Nodes[0].Request(ctx, "n2", follower.opts.verb(offsetHeartbeat), payload); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-viaHeartbeat:
		t.Fatalf("an AppendEntries with %d entries and commit index %d went to the heartbeat handler", len(got.Entries), got.LeaderCommitIndex)
	case <-viaConsumer:
	}

	// The verb's next heartbeat still takes the fast path: the first fix
	// decided by overwriting the handler's own flag, so one AppendEntries
	// with entries sent every later heartbeat to the consumer.
	beat, err := encodeAppend(nil, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("n1")}, Term: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes[0].Request(ctx, "n2", follower.opts.verb(offsetHeartbeat), beat); err != nil {
		t.Fatal(err)
	}
	select {
	case <-viaHeartbeat:
	case <-viaConsumer:
		t.Fatal("a heartbeat after an AppendEntries on the heartbeat verb went to the consumer")
	}
}
