package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestASocketKeepAliveTheKernelRefusesIsRefusedByValidate: Linux takes a
// TCP keep-alive idle time (TCP_KEEPIDLE) of at most 32767 seconds, about
// 9.1 hours, and refuses a longer one with EINVAL. A lane's
// SocketConfig.KeepAlive of 12 hours passed Validate, and then every
// connection of that lane failed at its dial ("socket options: ...
// setsockopt: invalid argument"), and every message with it. Validate
// now names it; the longest it accepts connects.
func TestASocketKeepAliveTheKernelRefusesIsRefusedByValidate(t *testing.T) {
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		long := *cfg
		long.Lanes.Sockets[routing.Small].KeepAlive = 12 * time.Hour
		require.ErrorContains(t, long.Validate(), "Lanes.Sockets[1].KeepAlive", "a keep-alive every dial of the lane fails on")
		cfg.Lanes.Sockets[routing.Small].KeepAlive = 32767 * time.Second
		require.NoError(t, cfg.Validate())
	})
	handleAll(c, verbEcho, func(_ context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(resp))
}
