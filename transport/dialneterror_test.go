package transport_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestANetworkErrorDuringTheHandshakeIsNotARefusal: n1's first dial to n2
// connects, and its socket then fails as a socket fails when the peer's
// host drops off the network in the middle of the handshake (ETIMEDOUT,
// once Lanes.Sockets' UserTimeout passes with the handshake's bytes
// unacknowledged; EHOSTUNREACH, when a router says so). Nothing refused
// anything: a request sent meanwhile fails with ErrConnectionReset, not
// ErrRefused, and a one-way message waits for the next dial and is
// delivered — with TLS as without it. (Under TLS, every error of the TLS
// handshake but the peer's hanging up was taken for a refusal for good:
// the request got ErrRefused, and the one-way message failed as refused.)
func TestANetworkErrorDuringTheHandshakeIsNotARefusal(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ETIMEDOUT, syscall.EHOSTUNREACH} {
		for _, withTLS := range []bool{false, true} {
			name := errno.Error() + "/plain text"
			if withTLS {
				name = errno.Error() + "/TLS"
			}
			t.Run(name, func(t *testing.T) {
				var faulty atomic.Bool // the next dial's socket fails
				o := transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
					if i != 0 {
						return
					}
					var d net.Dialer
					cfg.Dialer = dialerFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
						nc, err := d.DialContext(ctx, network, address)
						if err != nil || !faulty.Swap(false) {
							return nc, err
						}
						return &failingConn{Conn: nc, err: errno}, nil
					})
				}}
				if withTLS {
					o.CA = newCA(t, "test")
				}
				c := transporttest.New(t, 2, o)
				var handled atomic.Int64
				c.HandleAll(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
					handled.Add(1)
					return m.Payload, nil
				}))
				n1 := c.Nodes[0]

				faulty.Store(true)
				_, err := n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("req"))
				require.Error(t, err)
				assert.False(t, errors.Is(err, transport.ErrRefused), "a network error is no refusal: %v", err)
				assert.ErrorIs(t, err, transport.ErrConnectionReset)

				faulty.Store(true)
				dropped := n1.Stats().Total().DroppedTotal() // the request's
				require.NoError(t, n1.Send(ctxTimeout(t, 20*time.Second), c.ID(1), verbEcho, []byte("one-way")))
				waitFor(t, 10*time.Second, "the one-way message delivered by the next dial", func() bool {
					return handled.Load() == 1 || n1.Stats().Total().DroppedTotal() > dropped
				})
				require.Equal(t, dropped, n1.Stats().Total().DroppedTotal(), "dropped: %v", n1.Stats().Total().Dropped)
				require.EqualValues(t, 1, handled.Load())
			})
		}
	}
}

// failingConn is a TCP connection whose socket fails with err as the
// kernel fails one: what is written is queued, and the read that waits
// for the answer fails; the connection is closed under it.
type failingConn struct {
	net.Conn
	err syscall.Errno
}

func (c *failingConn) Read([]byte) (int, error) {
	c.Conn.Close()
	return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", c.err)}
}
