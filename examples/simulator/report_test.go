package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/examples/replication"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// blockingRequester holds every request until released.
type blockingRequester struct{ release chan struct{} }

func (b blockingRequester) Request(ctx context.Context, to cluster.NodeID, verb transport.Verb, payload []byte) ([]byte, error) {
	<-b.release
	return nil, nil
}

// lost is computed from the counts, not assumed: a digest with no outcome
// and a request that has not returned both show.
func TestAccountingFindsLostMessages(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	require.NoError(t, err)
	n, err := newSimNode(&world{opts: o, clusterName: clusterName}, "n1", "")
	require.NoError(t, err)

	// 8 digests sent: 1 refused at once, 1 dropped later, 5 written (the
	// urgent lane's 6 messages, less 1 failure response n1 sent there).
	for range 8 {
		n.ledger.gossipSends.Add(1)
	}
	n.ledger.gossipRejected.add(int(transport.ReasonOverloaded))
	n.ledger.gossipDropped.add(int(transport.ReasonExpired))
	n.past = []transport.Stats{{Conns: []transport.ConnStats{
		{Peer: "n2", Lane: routing.Urgent, MessagesSent: 4, ResponsesSent: 1, Dropped: [transport.NumReasons]uint64{transport.ReasonExpired: 1}},
		{Peer: "n3", Lane: routing.Urgent, MessagesSent: 2},
	}}}

	// Two requests that have not returned.
	requester := blockingRequester{release: make(chan struct{})}
	r, err := replication.New(replication.Config{Self: "n1", Requester: requester})
	require.NoError(t, err)
	n.replicators = append(n.replicators, r)
	done := make(chan error, 1)
	go func() { done <- r.Write(context.Background(), []cluster.NodeID{"n2", "n3"}, "k", []byte("v")) }()
	require.Eventually(t, func() bool { return r.Counts().Requests == 2 }, 5*time.Second, time.Millisecond)

	rep := &report{}
	accountNodes(rep, []*simNode{n}, false)
	require.Equal(t, account{Sent: 8, Delivered: 5, Failed: 2, Lost: 1,
		FailedBy: map[string]uint64{"overloaded": 1, "expired": 1}}, rep.PerNode[0].Gossip)
	require.Equal(t, int64(2), rep.PerNode[0].Requests.Lost)
	require.Equal(t, int64(3), rep.Summary.Lost)
	require.Equal(t, "summary: nodes=1 writes=0 writes_failed=0 sent=10 delivered=5 failed=2 lost=3 stuck=0", rep.SummaryLine)

	close(requester.release)
	require.NoError(t, <-done)
	require.NoError(t, r.Drain(context.Background()))
	rep = &report{}
	accountNodes(rep, []*simNode{n}, false)
	require.Equal(t, int64(1), rep.Summary.Lost, "the requests returned; the digest is still unaccounted for")
}

// A node on its own fails its writes as unavailable without sending a
// replica request: the summary line counts those writes (writes_failed)
// apart from the messages (failed), and agrees with the node's writes line.
func TestNodeSummaryCountsFailedWrites(t *testing.T) {
	o, err := parseOptions([]string{"-mode", "node", "-id", "n1", "-listen", freeAddr(t), "-gossip", freeGossipAddr(t),
		"-duration", "1500ms", "-rate", "20"}, io.Discard)
	require.NoError(t, err)
	var stdout bytes.Buffer
	r, err := run(t.Context(), o, &stdout, io.Discard)
	require.NoError(t, err)

	writes := r.PerNode[0].Writes
	require.Positive(t, writes.Failed)
	require.Equal(t, map[string]uint64{"unavailable": writes.Failed}, writes.FailedBy, "alone, every write lacks replicas")
	require.Zero(t, r.PerNode[0].Requests.Sent, "and sends no replica request")
	require.Equal(t, writes.Started, r.Summary.Writes)
	require.Equal(t, writes.Failed, r.Summary.WritesFailed)
	require.Zero(t, r.Summary.Failed, "no message failed")

	text := stdout.String()
	require.Contains(t, text, fmt.Sprintf("n1   writes %d: ok 0 (p50 - ms, p99 - ms), failed %d (unavailable=%d)\n",
		writes.Started, writes.Failed, writes.Failed))
	require.Contains(t, text, fmt.Sprintf("summary: nodes=1 writes=%d writes_failed=%d sent=", writes.Started, writes.Failed))
}

// A node whose counts add up to more outcomes than messages (a digest
// counted twice, a lost of -1) must not hide another node's message with
// no outcome: the summary once summed the nodes' lost, +1 and -1, to 0.
func TestAccountingDoesNotNetLosses(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	require.NoError(t, err)
	w := &world{opts: o, clusterName: clusterName}
	n1, err := newSimNode(w, "n1", "")
	require.NoError(t, err)
	n2, err := newSimNode(w, "n2", "")
	require.NoError(t, err)

	// n1: 2 digests sent, 1 written: 1 has no outcome.
	n1.ledger.gossipSends.Add(2)
	n1.past = []transport.Stats{{Conns: []transport.ConnStats{{Peer: "n2", Lane: routing.Urgent, MessagesSent: 1}}}}
	// n2: 2 digests sent, 2 written and 1 of them dropped too: counted twice.
	n2.ledger.gossipSends.Add(2)
	n2.ledger.gossipDropped.add(int(transport.ReasonExpired))
	n2.past = []transport.Stats{{Conns: []transport.ConnStats{{Peer: "n1", Lane: routing.Urgent, MessagesSent: 2,
		Dropped: [transport.NumReasons]uint64{transport.ReasonExpired: 1}}}}}

	rep := &report{}
	accountNodes(rep, []*simNode{n1, n2}, false)
	require.Equal(t, int64(1), rep.PerNode[0].Gossip.Lost)
	require.Equal(t, int64(-1), rep.PerNode[1].Gossip.Lost)
	require.Equal(t, int64(2), rep.Summary.Lost, rep.SummaryLine)
	require.Equal(t, 1, verdict(rep, io.Discard))
}

// TestServedLateCountsWritesHandedOverAfterTheirRequesterGaveUp: a
// replica write whose requester's deadline (its creation plus -timeout)
// had passed when the transport handed it over is counted, and the
// report says so; one in time is not. It is how the simulator shows a
// node spending itself on work no one waits for.
func TestServedLateCountsWritesHandedOverAfterTheirRequesterGaveUp(t *testing.T) {
	o, err := parseOptions([]string{"-timeout", "1s"}, io.Discard)
	require.NoError(t, err)
	n, err := newSimNode(&world{opts: o, clusterName: clusterName}, "n2", "")
	require.NoError(t, err)
	h := n.storeHandler(n.store)
	for _, age := range []time.Duration{2 * time.Second, 10 * time.Millisecond} {
		_, _ = h.ServeMessage(t.Context(), &transport.Message{From: "n1", CreatedAt: time.Now().Add(-age), IsRequest: true})
	}
	rep := &report{}
	accountNodes(rep, []*simNode{n}, true)
	require.NotNil(t, rep.PerNode[0].ServedLate)
	require.Equal(t, uint64(1), *rep.PerNode[0].ServedLate)
	var text bytes.Buffer
	rep.writeText(&text, false)
	require.Contains(t, text.String(), "; handed 1 replica writes after their requester gave up")
}

// A message the transport counted written that never arrived, and a
// replica request whose handler ran and that was never answered, end
// their requests as timed out, which the senders' accounts take for an
// outcome: the check of both ends of each pair lane counts them lost.
// On a pair lane whose connection broke (connected twice), what was on
// the wire may have been lost with it, and is not.
func TestAccountingFindsMessagesLostBetweenTheEnds(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	require.NoError(t, err)
	w := &world{opts: o, clusterName: clusterName}
	n1, err := newSimNode(w, "n1", "")
	require.NoError(t, err)
	n2, err := newSimNode(w, "n2", "")
	require.NoError(t, err)

	// n1 wrote 5 requests to n2 on the small lane, one connection; n2
	// had 4 (1 lost on the wire), ran their handler and answered 3 (1
	// never answered), which n1 had.
	h := n2.storeHandler(n2.store)
	for range 4 {
		_, _ = h.ServeMessage(t.Context(), &transport.Message{From: "n1", Lane: routing.Small, IsRequest: true, CreatedAt: time.Now()})
	}
	// On the large lane n1 connected twice: a message written and not
	// arrived went with the connection that broke.
	n1.past = []transport.Stats{{Conns: []transport.ConnStats{
		{Peer: "n2", Lane: routing.Small, MessagesSent: 5, MessagesReceived: 3, Connects: 1},
		{Peer: "n2", Lane: routing.Large, MessagesSent: 2, Connects: 2},
	}}}
	n2.past = []transport.Stats{{Conns: []transport.ConnStats{
		{Peer: "n1", Lane: routing.Small, MessagesSent: 3, ResponsesSent: 3, MessagesReceived: 4},
		{Peer: "n1", Lane: routing.Large, MessagesReceived: 1},
	}}}

	rep := &report{}
	accountNodes(rep, []*simNode{n1, n2}, true)
	require.Equal(t, int64(2), rep.Summary.Lost, rep.SummaryLine)
	require.Equal(t, 1, verdict(rep, io.Discard))
}
