package raftinternode_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/raft/raftinternode"
)

// TestPipelineAfterCloseFailsAtOnce: every RPC of a closed transport
// fails at once with raft.ErrTransportShutdown, but AppendEntriesPipeline
// dialled its target first and checked for Close only once the stream
// was open: to a follower that does not answer, it waited the whole
// Options.Timeout (10 s by default) and then returned the dial's error.
// Before the fix this failed with "AppendEntriesPipeline after Close
// returned after 3.001s: transport: open stream to n3 (stream
// connection): handshake: context deadline exceeded: ...; want transport
// shutdown at once".
func TestPipelineAfterCloseFailsAtOnce(t *testing.T) {
	const timeout = 3 * time.Second
	leader, _, c := pair(t, raftinternode.Options{Timeout: timeout})
	// n3 is a member whose address accepts connections (the kernel's
	// backlog does) and never answers them.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c.Members.Add(cluster.Member{ID: "n3", Addr: silent.Addr().String()})
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err := leader.AppendEntriesPipeline("n3", "n3")
	took := time.Since(start)
	if p != nil {
		_ = p.Close()
	}
	if !errors.Is(err, raft.ErrTransportShutdown) || took >= timeout/2 {
		t.Fatalf("AppendEntriesPipeline after Close returned after %v: %v; want %v at once", took.Round(time.Millisecond), err, raft.ErrTransportShutdown)
	}
}
