package raftinternode

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/internode/internode/transport"
)

// TestASnapshotWhoseLeaderStallsEndsOnTheFollower: raft reads a
// snapshot's data in its follower loop, from the stream the leader
// opened, and the follower's end had no deadline: a leader that stalled
// mid-snapshot (a paused process, a host gone without a word) held that
// loop — no votes, no elections — until TCP keep-alive gave up, minutes
// later, though the leader's own end gives up after its scaled timeout.
// The follower's read of the data now has that bound too.
func TestASnapshotWhoseLeaderStallsEndsOnTheFollower(t *testing.T) {
	opts := Options{Timeout: 100 * time.Millisecond}
	c, leader, follower := leaderAndFollower(t, opts)

	// A leader's InstallSnapshot of 1 MiB that stalls after its first
	// 64 KiB: its stream stays open, and nothing more comes.
	s, err := c.Nodes[0].OpenStream(context.Background(), "n2", leader.opts.verb(offsetSnapshot), transport.OwnConnection())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	head, err := appendFrame(nil, &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ID: []byte("n1"), Addr: []byte("n1")}, Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(append(head, make([]byte, 64<<10)...)); err != nil {
		t.Fatal(err)
	}

	var rpc raft.RPC
	select {
	case rpc = <-follower.Consumer():
	case <-time.After(10 * time.Second):
		t.Fatal("the snapshot never reached raft")
	}
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, rpc.Reader)
		read <- err
	}()
	select {
	case err := <-read:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the stalled snapshot's data ended with %v, want a deadline exceeded", err)
		}
		rpc.Respond(nil, err)
	case <-time.After(20 * time.Second):
		rpc.Respond(nil, errors.New("test gave up"))
		t.Fatal("raft's read of a stalled leader's snapshot still waits, 20 s after it stalled (its own timeout: 400 ms)")
	}
}
