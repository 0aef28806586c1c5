package raftinternode

import (
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestPipelineGarbledAnswerIsNoSuccess: raft's pipelineDecode reads a
// pipelined future's Response without calling Error, so a response that
// failed to decode must not say Success. decodeAppendResponse fills the
// fields as it reads them and fails only at the end — here on a byte
// after an answer saying Term 9 and Success — and the pipeline handed
// that half-decoded response to raft with the error beside it: raft
// would have counted the entries as replicated (or, with a misread Term
// above its own, stepped down). Before the fix this failed with "a
// response that failed to decode (raftinternode: malformed
// AppendEntries) says Success true, Term 9; raft reads it without
// calling Error". A failed response is the zero one now.
func TestPipelineGarbledAnswerIsNoSuccess(t *testing.T) {
	opts := Options{}
	c := transporttest.New(t, 2, transporttest.Options{
		Tweak: func(_ int, cfg *transport.Config) { opts.Configure(cfg) },
	})
	leader := New(c.Nodes[0], opts)
	t.Cleanup(func() { _ = leader.Close() })
	// The follower's end of the pipeline, garbling its answer: a valid
	// response, then one byte more inside the same frame.
	c.Nodes[1].HandleStream(leader.opts.verb(offsetPipeline), transport.StreamHandlerFunc(func(_ context.Context, s *transport.Stream) {
		r := newReader(s)
		if _, _, _, err := readFrame(r, nil); err != nil {
			return
		}
		body := appendAppendResponse(nil, &raft.AppendEntriesResponse{Term: 9, LastLog: 2, Success: true})
		body = append(body, 0)
		frame := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
		frame = append(append(frame, statusOK), body...)
		if _, err := s.Write(frame); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, r) // until the leader closes the pipeline
	}))
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
		err := f.Error()
		if err == nil {
			t.Fatal("a garbled response decoded without error")
		}
		if resp := f.Response(); resp.Success || resp.Term != 0 {
			t.Fatalf("a response that failed to decode (%v) says Success %v, Term %d; raft reads it without calling Error", err, resp.Success, resp.Term)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no response")
	}
}
