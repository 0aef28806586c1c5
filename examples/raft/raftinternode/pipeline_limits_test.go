package raftinternode_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/examples/raft/raftinternode"
)

// serveN answers the first n RPCs on tr's consumer with success, dropping
// them at once; it reports the number served on the returned channel.
func serveN(tr *raftinternode.Transport, n int, stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		served := 0
		defer func() { out <- served }()
		for served < n {
			select {
			case rpc := <-tr.Consumer():
				req := rpc.Command.(*raft.AppendEntriesRequest)
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + uint64(len(req.Entries)), Success: true}, nil)
				served++
			case <-stop:
				return
			}
		}
	}()
	return out
}

// TestFollowerDropsALargeBatchBuffer: the follower's pipeline reader
// reused one frame buffer for the life of the pipeline, so after one
// large batch it held that many bytes for as long as the pipeline lived.
// Like the leader's write buffer, one above 1 MiB is now dropped.
func TestFollowerDropsALargeBatchBuffer(t *testing.T) {
	leader, follower, _ := pair(t, raftinternode.Options{})
	stop := make(chan struct{})
	defer close(stop)
	serveN(follower, 3, stop)
	p, err := leader.AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(i uint64, size int) {
		t.Helper()
		req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: i, Entries: []*raft.Log{{Index: i + 1, Term: 1, Data: make([]byte, size)}}}
		if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-p.Consumer():
			if err := f.Error(); err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no response")
		}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	send(0, 100)
	before := heap()
	send(1, 64<<20)
	send(2, 100) // a small one after: the big buffer is no longer needed
	after := heap()
	grown := int64(after) - int64(before)
	t.Logf("heap before %d MiB, after %d MiB", before>>20, after>>20)
	if grown > 16<<20 {
		t.Fatalf("pipeline still holds %d MiB after a 64 MiB batch was answered", grown>>20)
	}
}
