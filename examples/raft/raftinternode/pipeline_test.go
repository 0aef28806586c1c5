package raftinternode_test

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/examples/raft/raftinternode"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// pair is two adapters on two internode nodes, without raft: the tests
// play raft's part.
func pair(t *testing.T, opts raftinternode.Options) (leader, follower *raftinternode.Transport, c *transporttest.Cluster) {
	c = transporttest.New(t, 2, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	leader, follower = raftinternode.New(c.Nodes[0], opts), raftinternode.New(c.Nodes[1], opts)
	t.Cleanup(func() { _ = leader.Close(); _ = follower.Close() })
	return leader, follower, c
}

// TestPipelineOrder: requests of sizes either side of the large-message
// threshold, pipelined 16 deep, reach the consumer in the order sent, and
// each response completes its own request's future, in order.
func TestPipelineOrder(t *testing.T) {
	leader, follower, _ := pair(t, raftinternode.Options{MaxInFlight: 16})
	const n = 200
	served := make(chan error, 1)
	go func() {
		for i := range uint64(n) {
			rpc := <-follower.Consumer()
			req := rpc.Command.(*raft.AppendEntriesRequest)
			if req.PrevLogEntry != i {
				served <- errorf("request %d arrived as number %d", req.PrevLogEntry, i)
				return
			}
			rpc.Respond(&raft.AppendEntriesResponse{LastLog: req.PrevLogEntry, Success: true}, nil)
		}
		served <- nil
	}()
	p, err := leader.AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := make(chan error, 1)
	go func() {
		for i := range uint64(n) {
			f := <-p.Consumer()
			if err := f.Error(); err != nil {
				got <- err
				return
			}
			if f.Request().PrevLogEntry != i || f.Response().LastLog != i {
				got <- errorf("future %d: request %d, response %d", i, f.Request().PrevLogEntry, f.Response().LastLog)
				return
			}
		}
		got <- nil
	}()
	for i := range uint64(n) {
		size := 100
		if i%5 == 0 {
			size = 200 << 10
		}
		req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: i, Entries: []*raft.Log{{Index: i + 1, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, size)}}}
		if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range []chan error{served, got} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("pipeline stalled")
		}
	}
}

// TestHeartbeatFastPath: raft's heartbeat travels on the urgent lane and
// goes to the heartbeat handler, not the consumer channel.
func TestHeartbeatFastPath(t *testing.T) {
	leader, follower, c := pair(t, raftinternode.Options{})
	follower.SetHeartbeatHandler(func(rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
	})
	var resp raft.AppendEntriesResponse
	hb := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("n1")}, Term: 7}
	if err := leader.AppendEntries("n2", "n2", hb, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Term != 7 || !resp.Success {
		t.Fatalf("response %+v", resp)
	}
	// The writer counts the message once written, which may be just
	// after the response arrived.
	waitFor(t, 5*time.Second, func() bool {
		for _, cs := range c.Nodes[0].Stats().Conns {
			if cs.Peer == "n2" && cs.Lane == routing.Urgent && cs.MessagesSent > 0 {
				return true
			}
		}
		return false
	})
	select {
	case rpc := <-follower.Consumer():
		t.Fatalf("heartbeat reached the consumer: %#v", rpc.Command)
	default:
	}
}

// TestPipelineTimeout: a follower that never answers fails the pipeline's
// request after about Options.Timeout, as NetworkTransport's deadline
// would, rather than holding raft's replication for ever.
func TestPipelineTimeout(t *testing.T) {
	leader, follower, _ := pair(t, raftinternode.Options{Timeout: 200 * time.Millisecond})
	taken := make(chan struct{})
	go func() {
		<-follower.Consumer() // and never respond
		close(taken)
	}()
	p, err := leader.AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-p.Consumer():
		if f.Error() == nil {
			t.Fatal("an unanswered request succeeded")
		}
		if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
			t.Fatalf("failed after %v, want about 200ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unanswered request never failed")
	}
	<-taken
}

// TestLargeAppendEntries: an AppendEntries outside a pipeline larger than
// the transport's largest message (1 MiB here) reaches raft whole, on a
// stream, and its response comes back.
func TestLargeAppendEntries(t *testing.T) {
	opts := raftinternode.Options{MaxRequestSize: 256 << 10}
	c := transporttest.New(t, 2, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) {
			opts.Configure(cfg)
			cfg.Memory.MaxMessageSize = 1 << 20
		},
	})
	leader, follower := raftinternode.New(c.Nodes[0], opts), raftinternode.New(c.Nodes[1], opts)
	t.Cleanup(func() { _ = leader.Close(); _ = follower.Close() })
	data := bytes.Repeat([]byte("raft"), 1<<20) // 4 MiB
	go func() {
		rpc := <-follower.Consumer()
		req := rpc.Command.(*raft.AppendEntriesRequest)
		ok := len(req.Entries) == 1 && bytes.Equal(req.Entries[0].Data, data)
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: ok}, nil)
	}()
	var resp raft.AppendEntriesResponse
	req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1, Entries: []*raft.Log{{Index: 2, Term: 1, Data: data}}}
	if err := leader.AppendEntries("n2", "n2", req, &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.Success {
		t.Fatal("the follower got the entry altered")
	}
}

// servedPipelines counts the goroutines running a follower's end of an
// append pipeline (Transport.servePipeline).
func servedPipelines() int {
	buf := make([]byte, 1<<22)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "raftinternode.(*Transport).servePipeline(")
}

// TestCloseEndsPipelinesServedToALeader: Close is documented to stop
// serving raft, pipelines included, but it only closed the pipelines this
// transport had opened. A pipeline a leader had opened to it kept its
// handler goroutines, its TCP connection of its own and its read buffer,
// blocked reading the next request, for as long as the leader left it
// idle: servePipeline watched for Close only while handing a request to
// raft. Before the fix this failed with "follower transport closed 5s
// ago; the pipeline it serves still runs".
func TestCloseEndsPipelinesServedToALeader(t *testing.T) {
	leader, follower, _ := pair(t, raftinternode.Options{})
	stop := make(chan struct{})
	defer close(stop)
	serveN(follower, 1, stop)
	p, err := leader.AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1, Entries: []*raft.Log{{Index: 2, Term: 1}}}
	if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-p.Consumer():
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no response")
	}
	// Answered: the follower's end now waits for the next request.
	if n := servedPipelines(); n != 1 {
		t.Fatalf("%d served pipelines before Close, want 1", n)
	}
	if err := follower.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for servedPipelines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("follower transport closed 5s ago; the pipeline it serves still runs (%d servePipeline goroutines)", servedPipelines())
		}
		<-poll.C
	}
}
