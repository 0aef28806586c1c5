package transport_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// laneStats returns node's stats for one lane to peer.
func laneStats(t *testing.T, n *transport.Transport, peer string, lane routing.Lane) transport.ConnStats {
	t.Helper()
	for _, c := range n.Stats().Conns {
		if string(c.Peer) == peer && c.Lane == lane {
			return c
		}
	}
	t.Fatalf("no stats for %s %s", peer, lane)
	return transport.ConnStats{}
}

func TestCoalescingPerLaneAndAtRunTime(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbBlock: routing.Urgent}
	})
	var got atomic.Int64
	count := func(ctx context.Context, m *transport.Message) ([]byte, error) { got.Add(1); return nil, nil }
	handleAll(c, verbData, count)
	handleAll(c, verbBlock, count)
	send := func(verb transport.Verb) {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verb, []byte("x")))
	}
	send(verbData)
	send(verbBlock)
	waitFor(t, 5*time.Second, "delivered", func() bool { return got.Load() == 2 })
	// The writer reports a write to its strategy after the write returns,
	// which can be after the peer handled what it carried: wait for the
	// report, so that it goes to this strategy and not the next one.
	smallWritten := func(messages uint64) func() bool {
		return func() bool { return laneStats(t, c.Nodes[0], "n2", routing.Small).Coalescing.Messages == messages }
	}
	waitFor(t, 5*time.Second, "the small lane's write recorded", smallWritten(1))
	assert.Equal(t, coalescing.NameAdaptive, laneStats(t, c.Nodes[0], "n2", routing.Small).Coalescing.Strategy, "the default for small")
	assert.Equal(t, coalescing.NameDisabled, laneStats(t, c.Nodes[0], "n2", routing.Urgent).Coalescing.Strategy, "urgent never waits")

	fixed, err := coalescing.ByName("fixed", 100*time.Microsecond)
	require.NoError(t, err)
	c.Nodes[0].SetCoalescing(func(routing.Lane) coalescing.Strategy { return fixed() })
	for range 100 {
		send(verbData)
	}
	waitFor(t, 5*time.Second, "delivered", func() bool { return got.Load() == 102 })
	waitFor(t, 5*time.Second, "the writes recorded", smallWritten(100)) // the statistics restarted
	small := laneStats(t, c.Nodes[0], "n2", routing.Small).Coalescing
	assert.Equal(t, coalescing.NameFixed, small.Strategy, "changed on a live connection")
	assert.Positive(t, small.Writes)
	assert.LessOrEqual(t, small.RequestedWait, time.Duration(small.Writes)*100*time.Microsecond,
		"no write asked to wait longer than the window")
}

// TestShutdownFlushesAtOnce: a strategy that would wait a second per write
// does not hold Shutdown: queued messages go out at once.
func TestShutdownFlushesAtOnce(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Lanes.Coalescing = func(routing.Lane) coalescing.Strategy { return coalescing.NewFixed(time.Second) }
	})
	var got atomic.Int64
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	for range 3 { // fewer than Fixed's "enough messages": it waits its window
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
	}
	// Far less than the one-second window the writer is waiting out.
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	require.NoError(t, c.Nodes[0].Shutdown(ctx))
	waitFor(t, 5*time.Second, "all delivered", func() bool { return got.Load() == 3 })
}

// answerByPending is a strategy whose answer depends only on what is
// pending: long while one message is, short once two are. It says when
// it first answered for one message, and records the waits the writer
// observed.
type answerByPending struct {
	one, more time.Duration
	askedOne  chan struct{} // closed at the first answer for one message
	once      sync.Once
	observed  chan time.Duration
}

func (s *answerByPending) Observe(time.Time, int) {}
func (s *answerByPending) Wait(_ time.Time, pending, _ int) time.Duration {
	switch {
	case pending <= 0:
		return 0
	case pending == 1:
		s.once.Do(func() { close(s.askedOne) })
		return s.one
	}
	return s.more
}

func (s *answerByPending) Flushed(_ time.Time, _, _ int, _, observed time.Duration) {
	select {
	case s.observed <- observed:
	default:
	}
}
func (s *answerByPending) Stats() coalescing.Stats { return coalescing.Stats{Strategy: "by-pending"} }

// TestWaitFollowsTheStrategysLatestAnswer: the writer asks again after each
// arrival, and the answer replaces what is left of the wait. A first
// message makes the strategy ask for 2 s; a second, sent once the writer
// is waiting, makes it ask for 1 ms, so both go out well before the first
// answer's deadline. (The writer once kept the first deadline and answered only
// to a zero: an idle bound set when a wait began capped the whole wait.)
func TestWaitFollowsTheStrategysLatestAnswer(t *testing.T) {
	s := &answerByPending{one: 2 * time.Second, more: time.Millisecond,
		askedOne: make(chan struct{}), observed: make(chan time.Duration, 1)}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
				if lane == routing.Small {
					return s
				}
				return coalescing.NewDisabled()
			}
		}
	})
	var got atomic.Int64
	handleAll(c, verbData, func(context.Context, *transport.Message) ([]byte, error) { got.Add(1); return nil, nil })
	send := func() { require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x"))) }
	send()
	select {
	case <-s.askedOne: // the writer is waiting for more
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never asked")
	}
	send()
	select {
	case observed := <-s.observed:
		assert.Less(t, observed, time.Second, "the wait ended at the later, shorter answer")
	case <-time.After(10 * time.Second):
		t.Fatal("no write")
	}
	waitFor(t, 5*time.Second, "both delivered", func() bool { return got.Load() == 2 })
}
