//go:build unix

package transport_test

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/internode/internode/transport"
)

// TestCustomListenerWithReusePort: Config.Listen binds with
// SO_REUSEPORT set through net.ListenConfig.Control, on real TCP, and the
// transport serves on that listener.
func TestCustomListenerWithReusePort(t *testing.T) {
	reusePort := net.ListenConfig{Control: func(_, _ string, raw syscall.RawConn) error {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	var listened atomic.Int32
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Listen = func(network, address string) (net.Listener, error) {
				listened.Add(1)
				return reusePort.Listen(context.Background(), network, address)
			}
		}
	})
	require.Equal(t, int32(1), listened.Load())
	addr := c.Nodes[1].Addr().String()

	// The socket has the option: a second socket with it binds the same
	// port (without it, EADDRINUSE).
	second, err := reusePort.Listen(context.Background(), "tcp", addr)
	require.NoError(t, err, "SO_REUSEPORT is set on the transport's listener")
	require.NoError(t, second.Close())
	_, err = net.Listen("tcp", addr)
	require.Error(t, err, "a socket without SO_REUSEPORT cannot bind it")

	c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
	resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("over the custom listener"))
	require.NoError(t, err)
	assert.Equal(t, "over the custom listener", string(resp))
	waitFor(t, 10*time.Second, "a TCP listener's connections are measured", func() bool {
		return c.Nodes[1].Stats().Total().QueuesMeasured
	})
}
