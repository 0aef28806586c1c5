package raftinternode_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/examples/raft/raftinternode"
)

// zeros is an endless snapshot.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestSnapshotRefusalReachesTheLeader: a follower that refuses an
// InstallSnapshot before taking all its data (here at once) answers with
// its error and closes its end; the leader, still writing the data, met
// the closed connection and returned that: "snapshot data: N of M
// bytes: broken pipe" (or connection reset), never the follower's reason,
// which NetworkTransport hands the leader. Before the fix this failed
// with "the leader's error does not carry the follower's: raftinternode:
// snapshot data: ... broken pipe".
func TestSnapshotRefusalReachesTheLeader(t *testing.T) {
	leader, follower, _ := pair(t, raftinternode.Options{})
	const reason = "snapshot refused: the disk is full"
	go func() {
		rpc, ok := <-follower.Consumer()
		if ok {
			rpc.Respond(nil, errors.New(reason)) // the data left unread
		}
	}()
	req := &raft.InstallSnapshotRequest{Term: 1, LastLogIndex: 10, LastLogTerm: 1, Size: 1 << 40}
	done := make(chan error, 1)
	go func() {
		done <- leader.InstallSnapshot("n2", "n2", req, new(raft.InstallSnapshotResponse), zeros{})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Fatalf("the leader's error does not carry the follower's: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("InstallSnapshot still runs 30s after the follower refused it")
	}
}
