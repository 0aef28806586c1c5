package raftinternode_test

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Each scenario runs over internode and, as the control, over raft's own
// NetworkTransport, in the same binary.
func forEachNetwork(t *testing.T, fn func(t *testing.T, kind networkKind)) {
	for _, kind := range networks {
		t.Run(kind.name, func(t *testing.T) { fn(t, kind) })
	}
}

// TestElection: three servers elect one leader that all of them follow.
func TestElection(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, kind networkKind) {
		c := newRaftCluster(t, kind, 3, nil)
		l := c.leader()
		if got := c.nodes[l].raft.State(); got != raft.Leader {
			t.Fatalf("node %d agreed as leader is %v", l, got)
		}
	})
}

// TestReplicate: 5,000 commands applied with all their futures in flight
// reach every server's FSM in the same order.
func TestReplicate(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, kind networkKind) {
		c := newRaftCluster(t, kind, 3, func(cfg *raft.Config) {
			setTimeouts(cfg, time.Second) // 5,000 futures at once under -race
		})
		l := c.leader()
		c.apply(l, 0, 5000)
		c.converge(5000)
	})
}

// TestMixedSizes: commands of 100 B and 200 KiB, so batches below and
// above internode's 64 KiB large-message threshold, replicate to every
// server. (raft itself refuses an AppendEntries out of turn; that the
// pipeline keeps the order is TestPipelineOrder's job.)
func TestMixedSizes(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, kind networkKind) {
		c := newRaftCluster(t, kind, 3, func(cfg *raft.Config) {
			setTimeouts(cfg, time.Second) // 200 KiB commands under -race
		})
		l := c.leader()
		c.applySized(l, 0, 300, func(k uint64) int {
			if k%7 == 0 {
				return 200 << 10
			}
			return 100
		})
		c.converge(300)
	})
}

// TestFiveServers: five servers replicate, and go on committing with two
// followers down.
func TestFiveServers(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, kind networkKind) {
		c := newRaftCluster(t, kind, 5, nil)
		l := c.leader()
		c.apply(l, 0, 1000)
		c.converge(1000)
		down := []int{(l + 1) % 5, (l + 2) % 5}
		for _, i := range down {
			c.stop(i)
		}
		c.apply(l, 1000, 1000)
		c.converge(2000, down...)
	})
}

// TestLeaderFailover: with the leader shut down, the two others elect a
// new one; the committed entries survive it and new ones commit.
func TestLeaderFailover(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, kind networkKind) {
		c := newRaftCluster(t, kind, 3, nil)
		old := c.leader()
		c.apply(old, 0, 500)
		c.converge(500)
		c.stop(old)
		l := c.leader(old)
		if l == old {
			t.Fatalf("stopped node %d still leader", old)
		}
		c.apply(l, 500, 500)
		c.converge(1000, old)
	})
}

// TestSnapshotCatchUp: a follower replaced by one with empty stores gets
// the leader's snapshot of 8 MiB through InstallSnapshot (the log before
// it is gone), then the entries after it.
func TestSnapshotCatchUp(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, kind networkKind) {
		c := newRaftCluster(t, kind, 3, func(cfg *raft.Config) {
			setTimeouts(cfg, 2*time.Second) // 8 MiB snapshots every 100 entries under -race
			cfg.SnapshotThreshold = 100
			cfg.TrailingLogs = 10
		})
		for _, nd := range c.nodes {
			nd.fsm.pad = 8 << 20 // far beyond a stream's window and session buffer
		}
		l := c.leader()
		follower := (l + 1) % 3
		c.apply(l, 0, 1000)
		c.converge(1000)
		c.stop(follower)
		c.apply(l, 1000, 1000)
		if err := c.nodes[l].raft.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
		c.restartEmpty(follower)
		c.apply(l, 2000, 100)
		c.converge(2100)
		if c.nodes[follower].fsm.restoreCount() == 0 {
			t.Fatalf("the empty follower caught up without a snapshot")
		}
	})
}

// TestPartitionHeals: the leader cut off from the others loses its place;
// the majority elects another and commits; once healed, the old leader
// follows and holds every entry.
func TestPartitionHeals(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, kind networkKind) {
		c := newRaftCluster(t, kind, 3, nil)
		old := c.leader()
		c.apply(old, 0, 200)
		c.converge(200)
		c.nodes[old].trans.isolated.Store(true)
		l := c.leader(old)
		c.apply(l, 200, 300)
		c.converge(500, old)
		c.nodes[old].trans.isolated.Store(false)
		c.converge(500)
		if !c.waitUntil(10*time.Second, func() bool { return c.nodes[old].raft.State() == raft.Follower }) {
			t.Fatal("the old leader did not become a follower within 10s")
		}
		c.apply(c.leader(), 500, 100)
		c.converge(600)
	})
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
