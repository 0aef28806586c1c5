package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestALongWriteTimeoutStillConnects: Timeouts.Write is also the default
// TCP_USER_TIMEOUT of outbound sockets, which the kernel takes in
// milliseconds as a 32-bit int (at most about 24.8 days). A longer Write,
// or Keepalive on the accepting side, that Validate accepts must not make
// every dial fail on its socket options: the derived default is capped.
// A lane's own SocketConfig.UserTimeout beyond it is refused by Validate.
func TestALongWriteTimeoutStillConnects(t *testing.T) {
	const long = 30 * 24 * time.Hour
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Timeouts.Write = long
		cfg.Timeouts.Keepalive = long
		require.NoError(t, cfg.Validate())
	})
	handleAll(c, verbEcho, func(_ context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(resp))

	cfg := transport.DefaultConfig()
	cfg.Lanes.Sockets[routing.Small].UserTimeout = long
	require.ErrorContains(t, cfg.Validate(), "UserTimeout")
}
