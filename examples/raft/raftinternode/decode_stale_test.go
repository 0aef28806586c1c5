package raftinternode

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestEmptySnapshotHeaderIsRefused: a snapshot stream whose header
// frame has no body (a truncated or hostile one) must be refused with
// an error, not handed to raft. decodeMsgpack gave the pooled decoder
// the body with ResetBytes, which does nothing for a nil slice: the
// decoder went on from where its previous caller left it, so raft got
// an InstallSnapshot decoded from the leftover bytes of an earlier,
// unrelated message — here a RequestVote whose payload carried a second
// value after the first, which was accepted without a word — read from
// a payload buffer the transport had since taken back. (Tried 20 times:
// the race detector makes sync.Pool drop a Put now and then.) Before the
// fix this failed with "attempt 0: an empty snapshot header reached raft
// as *raft.InstallSnapshotRequest &{... Term:99 ...}".
func TestEmptySnapshotHeaderIsRefused(t *testing.T) {
	opts := Options{}
	c := transporttest.New(t, 2, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	follower := New(c.Nodes[1], opts)
	t.Cleanup(func() { _ = follower.Close() })
	opts = follower.opts

	got := answerAll(t, follower)

	vote, _ := encodeAppend(nil, &raft.RequestVoteRequest{Term: 7, RPCHeader: raft.RPCHeader{Addr: []byte("n1")}})
	ghost, _ := encodeAppend(nil, &raft.RequestVoteRequest{Term: 99, RPCHeader: raft.RPCHeader{Addr: []byte("ghost")}})
	for attempt := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Nodes[0].Request(ctx, "n2", opts.verb(offsetRequestVote), append(append([]byte(nil), vote...), ghost...))
		cancel()
		if err == nil {
			<-got // the vote, the value after it ignored (see TestBytesAfterAVoteAreRefused)
		}
		s, err := c.Nodes[0].OpenStream(context.Background(), "n2", opts.verb(offsetSnapshot), transport.OwnConnection())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write([]byte{0, 0, 0, 1, statusOK}); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		status, body, _, err := readFrame(newReader(s), nil)
		_ = s.Close()
		select {
		case rpc := <-got:
			t.Fatalf("attempt %d: an empty snapshot header reached raft as %T %+v (stream answer: status %d %q %v)",
				attempt, rpc.Command, rpc.Command, status, body, err)
		default:
		}
		if err != nil || status != statusError {
			t.Fatalf("attempt %d: an empty snapshot header was answered with status %d %q, %v; want an error", attempt, status, body, err)
		}
	}
}

// answerAll answers every RPC tr hands raft (a vote granted nothing,
// anything else with an error) and passes it on to the returned channel.
func answerAll(t *testing.T, tr *Transport) <-chan raft.RPC {
	got := make(chan raft.RPC, 64)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-tr.Consumer():
				got <- rpc
				if _, ok := rpc.Command.(*raft.RequestVoteRequest); ok {
					rpc.Respond(&raft.RequestVoteResponse{}, nil)
				} else {
					rpc.Respond(nil, errors.New("test: not answered"))
				}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return got
}

// TestBytesAfterAVoteAreRefused: a RequestVote whose payload holds a
// second value after the first is malformed, as an AppendEntries with
// bytes after its last entry is: it fails with an error rather than
// reach raft with the rest ignored (and left in the pooled decoder).
func TestBytesAfterAVoteAreRefused(t *testing.T) {
	opts := Options{}
	c := transporttest.New(t, 2, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	follower := New(c.Nodes[1], opts)
	t.Cleanup(func() { _ = follower.Close() })
	got := answerAll(t, follower)
	vote, _ := encodeAppend(nil, &raft.RequestVoteRequest{Term: 7, RPCHeader: raft.RPCHeader{Addr: []byte("n1")}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Nodes[0].Request(ctx, "n2", follower.opts.verb(offsetRequestVote), append(vote, 0xc0))
	select {
	case rpc := <-got:
		t.Fatalf("a vote with a byte after it reached raft as %+v (caller's error: %v)", rpc.Command, err)
	default:
	}
	if err == nil {
		t.Fatal("a vote with a byte after it was answered without error")
	}
}
