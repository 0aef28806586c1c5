package raftinternode

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestCloseEndsSnapshotsServedToALeader: Close is documented to stop
// serving raft, but a snapshot stream a leader had opened to this node
// went on being served after it: serveSnapshot watched for Close only
// while handing the request to raft, not while it read the request from
// the stream. A leader that opened InstallSnapshot and then stalled — a
// partition, a paused process — kept the follower's handler goroutine,
// its TCP connection of its own, its stream slot and its 64 KiB read
// buffer past Close, until the leader's side ended (after its snapshot
// timeout, scaled by the snapshot's size, or TCP keep-alive). Before the
// fix this failed with "follower transport closed 5s ago; the snapshot
// stream a leader opened to it is still served".
func TestCloseEndsSnapshotsServedToALeader(t *testing.T) {
	opts := Options{}
	c, leader, follower := leaderAndFollower(t, opts)
	// A leader's InstallSnapshot that opened its stream and stalled
	// before writing the request.
	s, err := c.Nodes[0].OpenStream(context.Background(), "n2", leader.opts.verb(offsetSnapshot), transport.OwnConnection())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := follower.Close(); err != nil {
		t.Fatal(err)
	}
	// The follower's end closing is what the leader's end reads: EOF, or
	// the stream cut short.
	ended := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("read a byte from a follower that was never asked anything")
		}
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			t.Logf("the follower's end closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follower transport closed 5s ago; the snapshot stream a leader opened to it is still served")
	}
}

// leaderAndFollower starts two nodes configured by opts, n1 and n2, and
// an adapter on each; the test's cleanup closes the adapters.
func leaderAndFollower(t *testing.T, opts Options) (c *transporttest.Cluster, leader, follower *Transport) {
	c = transporttest.New(t, 2, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	leader, follower = New(c.Nodes[0], opts), New(c.Nodes[1], opts)
	t.Cleanup(func() { _ = leader.Close(); _ = follower.Close() })
	return c, leader, follower
}
