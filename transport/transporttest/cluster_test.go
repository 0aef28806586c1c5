package transporttest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const verbEcho transport.Verb = 1

func echo(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterRequestsAndRestart(t *testing.T) {
	c := transporttest.New(t, 3, transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
		cfg.Timeouts.Idle = time.Minute
	}})
	require.Len(t, c.Nodes, 3)
	assert.Equal(t, time.Minute, c.Configs[2].Timeouts.Idle, "Tweak applied")
	c.HandleAll(verbEcho, transport.HandlerFunc(echo))
	resp, err := c.Nodes[0].Request(ctxFor(t), c.ID(2), verbEcho, []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "hi", string(resp))
	require.NoError(t, c.WaitConnected(ctxFor(t), 0, 2))
	require.NoError(t, c.WaitQuiet(ctxFor(t)))
	assert.Equal(t, uint64(1), c.Total().ResponsesSent)

	n3, err := c.Restart(2)
	require.NoError(t, err)
	n3.Handle(verbEcho, transport.HandlerFunc(echo))
	// A request written before n1 notices its connection closed fails
	// with it; the next reaches the restarted n3 at its old address.
	require.Eventually(t, func() bool {
		resp, err = c.Nodes[0].Request(ctxFor(t), c.ID(2), verbEcho, []byte("again"))
		if err != nil {
			require.ErrorIs(t, err, transport.ErrConnectionReset)
		}
		return err == nil
	}, 10*time.Second, time.Millisecond, "the restarted node is reached")
	assert.Equal(t, "again", string(resp))
}

func TestProxyKillAndFreeze(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{Proxied: true, Tweak: func(i int, cfg *transport.Config) {
		cfg.Timeouts.Keepalive = 2 * time.Second
	}})
	c.HandleAll(verbEcho, transport.HandlerFunc(echo))
	_, err := c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("x"))
	require.NoError(t, err)
	require.Positive(t, c.Proxies[1].Conns(), "n1's connection to n2 crosses n2's proxy")

	require.Positive(t, c.Proxies[1].Kill())
	// A request written before the sender notices the reset fails with
	// it (at most once); the next goes over a new connection.
	require.Eventually(t, func() bool {
		_, err := c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("after a reset"))
		if err != nil {
			require.ErrorIs(t, err, transport.ErrConnectionReset)
		}
		return err == nil
	}, 10*time.Second, time.Millisecond, "redialled")

	require.Positive(t, c.Proxies[1].Freeze()+c.Proxies[0].Freeze())
	_, err = c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("into the silence"))
	require.ErrorIs(t, err, transport.ErrConnectionReset, "judged dead after the keepalive timeout")
	_, err = c.Nodes[0].Request(ctxFor(t), c.ID(1), verbEcho, []byte("after"))
	require.NoError(t, err)
}

func TestStartWithoutATest(t *testing.T) {
	c, err := transporttest.Start(2, transporttest.Options{ClusterName: "example"})
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "example", c.Configs[0].ClusterName)
	_, err = transporttest.Start(1, transporttest.Options{Tweak: func(i int, cfg *transport.Config) { cfg.NodeID = "" }})
	assert.Error(t, err, "a bad config fails Start")
}

// TestRestartWithHandlersBeforeStart: messages queued for a node while it
// was down reach it as it comes back, and with RestartWith its handlers
// are there for them: none is dropped for want of a handler.
func TestRestartWithHandlersBeforeStart(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{})
	got := make(chan string, 16)
	take := transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		got <- string(m.Payload)
		return nil, nil
	})
	c.HandleAll(verbEcho, take)
	require.NoError(t, c.Nodes[0].Send(ctxFor(t), c.ID(1), verbEcho, []byte("before")))
	assert.Equal(t, "before", <-got)

	require.NoError(t, c.Nodes[1].Close())
	// Once n1 has seen its connection end: what it wrote before then went
	// into a socket the closed n2 no longer read.
	require.Eventually(t, func() bool {
		for _, cs := range c.Nodes[0].Stats().Conns {
			if cs.Peer == c.ID(1) && cs.Connected {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond)
	for _, m := range []string{"queued 1", "queued 2", "queued 3"} {
		require.NoError(t, c.Nodes[0].Send(ctxFor(t), c.ID(1), verbEcho, []byte(m)))
	}
	started := false
	n2, err := c.RestartWith(1, func(tr *transport.Transport) {
		started = true
		tr.Handle(verbEcho, take)
	})
	require.NoError(t, err)
	require.True(t, started)
	assert.Same(t, n2, c.Nodes[1])
	for _, want := range []string{"queued 1", "queued 2", "queued 3"} {
		select {
		case m := <-got:
			assert.Equal(t, want, m)
		case <-ctxFor(t).Done():
			t.Fatalf("%q never arrived", want)
		}
	}
	assert.Zero(t, n2.Stats().Total().DroppedInbound[transport.ReasonUnknownVerb])
}

// TestRestartAfterClose: Restart after Close started a node on the
// closed cluster's address that nothing closed (its goroutines leaked
// past the test); it now fails with ErrClosed and starts nothing.
func TestRestartAfterClose(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{})
	c.Close()
	tr, err := c.Restart(1)
	if tr != nil {
		tr.Close()
	}
	require.ErrorIs(t, err, transporttest.ErrClosed)
	assert.Nil(t, tr)
}
