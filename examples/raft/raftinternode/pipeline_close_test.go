package raftinternode_test

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/examples/raft/raftinternode"
)

// TestPipelineCloseFailsUnansweredRequests: pipeline.Close is documented
// to fail the requests not yet answered, but only the one whose response
// the reader was reading failed: the reader then chose between the next
// written request and the shutdown at random, and left the rest with a
// future whose Error waited for ever. Before the fix this failed with
// "future N of 8: Error still waits 5s after Close".
func TestPipelineCloseFailsUnansweredRequests(t *testing.T) {
	const n = 8
	leader, _, _ := pair(t, raftinternode.Options{MaxInFlight: n})
	// The follower's raft never reads its consumer: nothing is answered.
	p, err := leader.AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	futures := make([]raft.AppendFuture, 0, n)
	for i := range uint64(n) {
		req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: i, Entries: []*raft.Log{{Index: i + 1, Term: 1}}}
		f, err := p.AppendEntries(req, new(raft.AppendEntriesResponse))
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i, f := range futures {
		done := make(chan error, 1)
		go func() { done <- f.Error() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("future %d of %d: an unanswered request succeeded", i+1, n)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("future %d of %d: Error still waits 5s after Close", i+1, n)
		}
	}
}
