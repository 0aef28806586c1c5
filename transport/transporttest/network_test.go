package transporttest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

const verbOneWay transport.Verb = 2

// ledger records, per ordered pair and sequence number, what became of
// each one-way message: accepted by Send, delivered to the handler,
// dropped by the sender (with its reason).
type ledger struct {
	// queued counts, per node, the messages it queued: one-way messages
	// Send accepted, Request calls, and responses its handlers gave.
	queued []atomic.Int64

	mu        sync.Mutex
	accepted  map[[3]int]bool
	delivered map[[3]int]int
	dropped   map[[3]int][]transport.Reason
}

func newLedger(n int) *ledger {
	return &ledger{queued: make([]atomic.Int64, n), accepted: map[[3]int]bool{}, delivered: map[[3]int]int{}, dropped: map[[3]int][]transport.Reason{}}
}

func (l *ledger) record(m map[[3]int]int, key [3]int) {
	l.mu.Lock()
	m[key]++
	l.mu.Unlock()
}

// check asserts that every message a node queued ended in exactly one
// counted outcome, written or dropped with a reason (Stats), and that no
// one-way message was delivered or dropped twice (one both delivered and
// dropped is allowed only as a connection reset: written, then the
// connection died before the sender knew). One-way messages from seq
// mustDeliver on must have been delivered or dropped: they were queued
// while no connection existed. It returns how many one-way messages were
// delivered, dropped, and lost with a connection after being written.
func (l *ledger) check(t *testing.T, c *transporttest.Cluster, mustDeliver int) (delivered, dropped, lost int) {
	for i, node := range c.Nodes {
		st := node.Stats().Total()
		assert.Equal(t, l.queued[i].Load(), int64(st.MessagesSent+st.DroppedTotal()),
			"n%d: messages queued vs written+dropped", i+1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for key := range l.accepted {
		d, r := l.delivered[key], l.dropped[key]
		switch {
		case d == 0 && len(r) == 0 && key[2] >= mustDeliver:
			t.Errorf("n%d→n%d #%d lost: neither delivered nor dropped", key[0]+1, key[1]+1, key[2])
		case d == 0 && len(r) == 0:
			lost++
		case d > 1 || len(r) > 1:
			t.Errorf("n%d→n%d #%d delivered %d times, dropped %v", key[0]+1, key[1]+1, key[2], d, r)
		case d == 1 && len(r) == 1 && r[0] != transport.ReasonConnectionReset:
			t.Errorf("n%d→n%d #%d delivered and dropped as %v", key[0]+1, key[1]+1, key[2], r[0])
		}
		delivered += d
		dropped += len(r)
	}
	for key := range l.delivered {
		if !l.accepted[key] {
			t.Errorf("n%d→n%d #%d delivered though Send failed", key[0]+1, key[1]+1, key[2])
		}
	}
	return delivered, dropped, lost
}

// sendOneWay sends message seq from node i to node j and records it.
func (l *ledger) sendOneWay(ctx context.Context, c *transporttest.Cluster, i, j, seq int) {
	if c.Nodes[i].Send(ctx, c.ID(j), verbOneWay, binary.BigEndian.AppendUint64(nil, uint64(seq))) == nil {
		l.queued[i].Add(1)
		l.mu.Lock()
		l.accepted[[3]int{i, j, seq}] = true
		l.mu.Unlock()
	}
}

// request sends a request from node i to node j and counts it.
func (l *ledger) request(ctx context.Context, c *transporttest.Cluster, i, j int, payload string) error {
	l.queued[i].Add(1)
	_, err := c.Nodes[i].Request(ctx, c.ID(j), verbEcho, []byte(payload))
	return err
}

// ledgerCluster starts an in-memory cluster of n nodes whose one-way
// messages are recorded in the returned ledger. Connections are judged
// dead after 2 s of silence, and dials and handshakes give up after 300 ms.
func ledgerCluster(t *testing.T, n int) (*transporttest.Cluster, *ledger) {
	l := newLedger(n)
	index := func(id string) int { return int(id[1] - '1') }
	c := transporttest.New(t, n, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 2 * time.Second
		cfg.Timeouts.Dial = 300 * time.Millisecond
		cfg.Timeouts.Handshake = 300 * time.Millisecond
		cfg.OnDropped = func(m transport.DroppedMessage) {
			if m.Verb != verbOneWay || m.Response {
				return
			}
			key := [3]int{i, index(string(m.Peer)), int(binary.BigEndian.Uint64(m.Payload))}
			l.mu.Lock()
			l.dropped[key] = append(l.dropped[key], m.Reason)
			l.mu.Unlock()
		}
	}})
	for i, node := range c.Nodes {
		node.Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			l.queued[i].Add(1) // the response
			return m.Payload, nil
		}))
		node.Handle(verbOneWay, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			l.record(l.delivered, [3]int{index(string(m.From)), i, int(binary.BigEndian.Uint64(m.Payload))})
			return nil, nil
		}))
	}
	return c, l
}

// everyPairMoves waits until a request succeeds between every ordered
// pair of nodes.
func everyPairMoves(t *testing.T, c *transporttest.Cluster, l *ledger) {
	t.Helper()
	for i := range c.Nodes {
		for j := range c.Nodes {
			if i == j {
				continue
			}
			require.Eventually(t, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				return l.request(ctx, c, i, j, "ping") == nil
			}, 15*time.Second, 10*time.Millisecond, "n%d→n%d moves", i+1, j+1)
		}
	}
}

// connected reports whether node i has an established small-lane
// connection to node j.
func connected(c *transporttest.Cluster, i, j int) bool {
	for _, cs := range c.Nodes[i].Stats().Conns {
		if cs.Peer == c.ID(j) && cs.Lane == routing.Small {
			return cs.Connected
		}
	}
	return false
}

// TestPartitionFailsRequestsAndHealMovesEveryPair partitions n1 from n2
// on the in-memory network: their requests fail within their own
// timeout, n1 and n3 still talk, the silent connections are judged dead
// and the redials wait; once healed every pair moves again, and every
// one-way message sent meanwhile ended in exactly one counted outcome.
func TestPartitionFailsRequestsAndHealMovesEveryPair(t *testing.T) {
	c, l := ledgerCluster(t, 3)
	everyPairMoves(t, c, l)
	ctx := ctxFor(t)
	seq := 0
	for range 20 {
		seq++
		l.sendOneWay(ctx, c, 0, 1, seq)
		l.sendOneWay(ctx, c, 1, 0, seq)
	}

	c.Network.Partition("n1", "n2")
	const timeout = 200 * time.Millisecond
	for _, pair := range [][2]int{{0, 1}, {1, 0}} {
		for range 3 {
			reqCtx, cancel := context.WithTimeout(ctx, timeout)
			start := time.Now()
			err := l.request(reqCtx, c, pair[0], pair[1], "across the partition")
			elapsed := time.Since(start)
			cancel()
			require.Error(t, err, "n%d→n%d across the partition", pair[0]+1, pair[1]+1)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			// Bounded by the request's own timeout (with room for a
			// loaded machine), not by a keepalive or a dial timeout.
			assert.Less(t, elapsed, timeout+time.Second, "the request failed at its deadline")
		}
	}
	err := l.request(ctx, c, 0, 2, "n3 is on our side")
	require.NoError(t, err, "a partition cuts only its own pair")

	// The silent connections are judged dead (Keepalive 2 s); the
	// redials of the messages sent then wait on the partition and give up
	// after Timeouts.Dial; the messages wait for the peer, or expire.
	require.Eventually(t, func() bool { return !connected(c, 0, 1) && !connected(c, 1, 0) },
		15*time.Second, 10*time.Millisecond, "connections across the partition judged dead")
	waited := seq + 1
	for range 20 {
		seq++
		l.sendOneWay(ctx, c, 0, 1, seq)
		l.sendOneWay(ctx, c, 1, 0, seq)
	}
	require.Eventually(t, func() bool { return c.Nodes[0].Stats().Total().ConnectFailures > 0 },
		15*time.Second, 10*time.Millisecond, "a redial across the partition failed")

	c.Network.Heal("n1", "n2")
	everyPairMoves(t, c, l)
	require.NoError(t, c.WaitQuiet(ctx))
	delivered, dropped, lost := l.check(t, c, waited)
	t.Logf("one-way messages across the partition: delivered=%d dropped=%d written and lost with their connection=%d, of %d sent",
		delivered, dropped, lost, 2*seq)
	assert.Positive(t, delivered)
}

// TestBlackholeFailsHandshakesUntilLifted: connections to a blackholed
// node are accepted by the network and never answered, so the handshake
// times out (Timeouts.Dial) and the request fails before its own
// deadline; once lifted the node is reached.
func TestBlackholeFailsHandshakesUntilLifted(t *testing.T) {
	c, l := ledgerCluster(t, 2)
	c.Network.Blackhole("n2")
	reqCtx, cancel := context.WithTimeout(ctxFor(t), 5*time.Second)
	defer cancel()
	err := l.request(reqCtx, c, 0, 1, "into the hole")
	require.Error(t, err)
	assert.NoError(t, reqCtx.Err(), "failed by the handshake timeout, before the request's deadline")
	assert.ErrorIs(t, err, transport.ErrConnectionReset, "cannot connect: %v", err)
	assert.Positive(t, c.Nodes[0].Stats().Total().ConnectFailures)

	c.Network.Unblackhole("n2")
	everyPairMoves(t, c, l)
}

// TestCutResetsAndRedials: Cut resets the connections between two nodes;
// a request caught in it fails as a reset, and the next goes over a new
// connection.
func TestCutResetsAndRedials(t *testing.T) {
	c, l := ledgerCluster(t, 2)
	everyPairMoves(t, c, l)
	require.Positive(t, c.Network.Cut("n1", "n2"))
	require.Eventually(t, func() bool {
		err := l.request(ctxFor(t), c, 0, 1, "after the cut")
		if err != nil {
			require.ErrorIs(t, err, transport.ErrConnectionReset)
		}
		return err == nil
	}, 10*time.Second, time.Millisecond, "redialled")
	assert.GreaterOrEqual(t, c.Nodes[0].Stats().Total().Connects, uint64(2))
}

// TestDelayIsAddedEachWay: a request's round trip over a delayed link
// takes at least twice the delay.
func TestDelayIsAddedEachWay(t *testing.T) {
	c, l := ledgerCluster(t, 2)
	everyPairMoves(t, c, l)
	const delay = 40 * time.Millisecond
	c.Network.Delay("n1", "n2", delay)
	for range 3 {
		start := time.Now()
		err := l.request(ctxFor(t), c, 0, 1, "slow")
		require.NoError(t, err)
		assert.GreaterOrEqual(t, time.Since(start), 2*delay)
	}
	c.Network.Delay("n1", "n2", 0)
	everyPairMoves(t, c, l)
}

func TestInMemoryAndProxiedExclude(t *testing.T) {
	_, err := transporttest.Start(2, transporttest.Options{InMemory: true, Proxied: true})
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.Canceled))
}

// TestInMemoryTLSAndRestart: TLS wraps the in-memory connections (a node
// without a certificate is refused), and a restarted node is reached at
// its old in-memory address.
func TestInMemoryTLSAndRestart(t *testing.T) {
	ca, err := transporttest.NewCA("test")
	require.NoError(t, err)
	c := transporttest.New(t, 2, transporttest.Options{InMemory: true, CA: ca})
	c.HandleAll(verbEcho, transport.HandlerFunc(echo))
	resp, err := c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("sealed"))
	require.NoError(t, err)
	assert.Equal(t, "sealed", string(resp))

	plain := transporttest.Config("n3", "test", nil)
	c.Network.Host("n3").Configure(&plain)
	n3, err := c.Add(plain)
	require.NoError(t, err)
	_, err = n3.Request(ctxFor(t), c.ID(0), verbEcho, []byte("in clear"))
	require.ErrorIs(t, err, transport.ErrRefused, "a plain-text node is refused by a TLS one")

	addr := c.Nodes[1].Addr().String()
	_, err = c.Restart(1)
	require.NoError(t, err)
	assert.Equal(t, addr, c.Nodes[1].Addr().String())
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(echo))
	require.Eventually(t, func() bool {
		_, err := c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("again"))
		return err == nil
	}, 10*time.Second, time.Millisecond, "the restarted node is reached")
}
