package transport_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

const verbNetOneWay transport.Verb = 90

func payloadEcho(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil }

// TestInMemoryNetworkCarriesEveryKind runs two transports entirely over
// transporttest's in-memory connections, which are not *net.TCPConn and
// have no kernel socket: requests, one-way messages, large messages,
// streams, and SendFile (a buffered copy instead of sendfile and splice)
// all work, and Stats says the socket queues went unmeasured.
func TestInMemoryNetworkCarriesEveryKind(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{InMemory: true})
	ctx := ctxTimeout(t, 20*time.Second)
	assert.Equal(t, "mem", c.Nodes[1].Addr().Network())

	c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
	resp, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "hi", string(resp))

	large := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // 300 KiB: the large lane
	resp, err = c.Nodes[1].Request(ctx, c.ID(0), verbEcho, large)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(large, resp), "a large message crosses intact")

	const oneWay = 200
	var received atomic.Int64
	c.Nodes[1].Handle(verbNetOneWay, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		received.Add(1)
		return nil, nil
	}))
	for range oneWay {
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbNetOneWay, []byte("x")))
	}
	waitFor(t, 10*time.Second, "one-way messages delivered", func() bool { return received.Load() == oneWay })

	c.Nodes[1].HandleStream(verbEcho, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.Copy(s, s)
	}))
	s, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbEcho)
	require.NoError(t, err)
	streamed := bytes.Repeat([]byte("stream"), 100<<10)
	go func() {
		_, _ = s.Write(streamed)
		_ = s.CloseWrite()
	}()
	back, err := io.ReadAll(s)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(streamed, back), "a stream echoes %d bytes", len(streamed))
	require.NoError(t, s.Close())

	got := receiveToFiles(t, c.Nodes[1])
	src, data := tempFile(t, 3<<20+7)
	n, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	written, err := os.ReadFile(<-got)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, written), "the file arrives byte for byte")

	for i := range c.Nodes {
		for _, cs := range c.Nodes[i].Stats().Conns {
			assert.False(t, cs.QueuesMeasured, "n%d %s %v: no socket to measure", i+1, cs.Peer, cs.Lane)
			assert.Zero(t, cs.SendQueueMax)
		}
	}
	assert.Equal(t, uint64(1), c.Nodes[1].Stats().FilesReceived)
}
