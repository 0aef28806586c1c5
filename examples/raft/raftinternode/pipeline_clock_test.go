package raftinternode

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/internal/clocktest"
)

// steppedClock is the real clock, its wall reading stepped by step once
// step is set. read2 closes at the second reading after the step.
type steppedClock struct {
	step  atomic.Int64 // a time.Duration
	reads atomic.Int64
	read2 chan struct{}
}

func (c *steppedClock) now() time.Time {
	d := time.Duration(c.step.Load())
	if d == 0 {
		return time.Now()
	}
	if c.reads.Add(1) == 2 {
		close(c.read2)
	}
	return clocktest.WallStepped(time.Now(), d)
}

// TestPipelineWatchIgnoresWallClockSteps: the pipeline's watch kept its
// progress marks as wall-clock readings (time.Now().UnixNano(), which
// drops Go's monotonic reading) and compared them with later ones, so a
// step of the system clock moved its idea of how long the pipeline had
// been idle. Stepped back an hour after a request was written, a
// follower that never answers was not detected for an hour and Timeout,
// and raft's replication to it hung as long; before the fix "back" failed
// with "a follower silent for 4s (Timeout 200ms) is still not detected
// after the wall clock stepped back an hour". Stepped forward an hour,
// the next tick closed a healthy pipeline; "forward" failed with "a
// healthy pipeline failed after the wall clock stepped forward an hour:
// use of closed network connection". The marks are offsets on the
// monotonic clock now.
func TestPipelineWatchIgnoresWallClockSteps(t *testing.T) {
	// start opens a pipeline on clock to a follower that takes a request
	// and hands it to the test, unanswered.
	start := func(t *testing.T, timeout time.Duration, clock *steppedClock) (*pipeline, <-chan raft.RPC) {
		opts := Options{Timeout: timeout}
		_, leader, follower := leaderAndFollower(t, opts)
		leader.now = clock.now
		taken := make(chan raft.RPC, 1)
		go func() { taken <- <-follower.Consumer() }()
		ap, err := leader.AppendEntriesPipeline("n2", "n2")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ap.Close() })
		if _, err := ap.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
		return ap.(*pipeline), taken
	}

	t.Run("back", func(t *testing.T) {
		const timeout = 200 * time.Millisecond
		clock := &steppedClock{read2: make(chan struct{})}
		p, taken := start(t, timeout, clock)
		<-taken // and never answered: a stuck follower
		clock.step.Store(int64(-time.Hour))
		select {
		case f := <-p.Consumer():
			if f.Error() == nil {
				t.Fatal("an unanswered request succeeded")
			}
		case <-time.After(20 * timeout):
			t.Fatalf("a follower silent for %v (Timeout %v) is still not detected after the wall clock stepped back an hour", 20*timeout, timeout)
		}
	})

	t.Run("forward", func(t *testing.T) {
		const timeout = 2 * time.Second
		clock := &steppedClock{read2: make(chan struct{})}
		p, taken := start(t, timeout, clock)
		rpc := <-taken
		clock.step.Store(int64(time.Hour))
		// The watch reads the clock every Timeout/4 and nothing else does
		// while the request waits: two readings are two of its ticks, well
		// within Timeout of the request.
		<-clock.read2
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
		select {
		case f := <-p.Consumer():
			if err := f.Error(); err != nil {
				t.Fatalf("a healthy pipeline failed after the wall clock stepped forward an hour: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no response")
		}
	})
}

// heldClock reads a time that moves only when the test moves it.
type heldClock struct {
	base time.Time
	off  atomic.Int64 // a time.Duration
}

func (c *heldClock) now() time.Time { return c.base.Add(time.Duration(c.off.Load())) }

// TestPipelineIdleThenBusyIsNotTimedOut: progress was refreshed only
// after AppendEntries had taken a slot and encoded the frame. After the
// pipeline had been idle longer than Timeout, a watch tick that fell while
// the first new request was being encoded saw a slot held (busy) and a
// stale progress time, and closed the stream before a byte was written:
// AppendEntries failed with io.ErrClosedPipe though nothing was slow. The
// frame is now encoded first, and an idle pipeline's clock restarts before
// the slot.
//
// The pipeline's clock is held: it moves past Timeout while the pipeline
// is idle and then stands still, so only a stale mark can look like a
// Timeout without progress, however slowly the machine encodes and
// writes. (Before the fix this fails with io.ErrClosedPipe: encoding the
// batch takes several of the watch's ticks, Timeout/4 each.)
func TestPipelineIdleThenBusyIsNotTimedOut(t *testing.T) {
	const timeout = 40 * time.Millisecond
	opts := Options{Timeout: timeout}
	_, leader, follower := leaderAndFollower(t, opts)
	clock := &heldClock{base: time.Now()}
	leader.now = clock.now
	go func() {
		rpc := <-follower.Consumer()
		req := rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + uint64(len(req.Entries)), Success: true}, nil)
	}()
	ap, err := leader.AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ap.Close() })
	entries := make([]*raft.Log, 50_000)
	for i := range entries {
		entries[i] = &raft.Log{Index: uint64(i + 2), Term: 1, Data: []byte{1}, AppendedAt: clock.base}
	}
	req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1, Entries: entries}
	clock.off.Store(int64(3 * timeout)) // idle for longer than Timeout
	_, err = ap.AppendEntries(req, new(raft.AppendEntriesResponse))
	if errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("the watch closed an idle pipeline while its first request was being encoded: %v", err)
	}
	if err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	select {
	case f := <-ap.Consumer():
		if err := f.Error(); err != nil {
			t.Fatalf("the request failed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no response")
	}
}
