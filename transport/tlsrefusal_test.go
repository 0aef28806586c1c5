package transport_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestTLSPeerWithoutRoomIsNotRefusedForGood: a peer that closes a new
// connection at once because it has no room for another unfinished
// handshake (MaxPendingHandshakesPerHost) is "not refusing for good": a
// one-way message sent meanwhile waits and is delivered once there is room,
// and a request fails with ErrConnectionReset, not ErrRefused — with TLS as
// without it. (With TLS, any TLS handshake error was taken for a refusal:
// the queued one-way message failed as refused, and the request got
// ErrRefused, which tells its caller the peer will never take it.)
func TestTLSPeerWithoutRoomIsNotRefusedForGood(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		name := "plain text"
		if withTLS {
			name = "TLS"
		}
		t.Run(name, func(t *testing.T) {
			o := transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
				cfg.Security.MaxPendingHandshakesPerHost = 1
				cfg.Timeouts.Handshake = 10 * time.Second // the blocker holds its slot until closed
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
			n1, n2 := c.Nodes[0], c.Nodes[1]

			// A connection from this host that never handshakes holds n2's
			// one slot for this host; a second one, refused at once, shows
			// the first was accepted and counted (accepts are in order).
			blocker, err := net.Dial("tcp", n2.Addr().String())
			require.NoError(t, err)
			defer blocker.Close()
			probe, err := net.Dial("tcp", n2.Addr().String())
			require.NoError(t, err)
			closedByPeer(t, probe)
			probe.Close()
			waitFor(t, 5*time.Second, "the probe refused", func() bool {
				return n2.Stats().Refusals[transport.RefusedTooMany] == 1
			})

			// A request while n2 has no room: it fails, but not as refused
			// for good.
			_, err = n1.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("req"))
			require.Error(t, err)
			assert.False(t, errors.Is(err, transport.ErrRefused), "no room now is not a refusal: %v", err)
			assert.ErrorIs(t, err, transport.ErrConnectionReset)

			// A one-way message while n2 has no room waits for it.
			dropped := n1.Stats().Total().DroppedTotal() // the request's
			require.NoError(t, n1.Send(ctxTimeout(t, 20*time.Second), c.ID(1), verbEcho, []byte("one-way")))
			failures := n1.Stats().Total().ConnectFailures
			waitFor(t, 5*time.Second, "n1 fails to connect again", func() bool {
				return n1.Stats().Total().ConnectFailures > failures
			})
			require.Equal(t, dropped, n1.Stats().Total().DroppedTotal(), "dropped: %v", n1.Stats().Total().Dropped)
			blocker.Close()
			waitFor(t, 10*time.Second, "the one-way message delivered once n2 has room", func() bool {
				return handled.Load() == 1 || n1.Stats().Total().DroppedTotal() > dropped
			})
			require.Equal(t, dropped, n1.Stats().Total().DroppedTotal(), "dropped: %v", n1.Stats().Total().Dropped)
			require.EqualValues(t, 1, handled.Load())
		})
	}
}

// TestPlainNodeRefusesTLSPeerClearly: a TLS node dialling a plain-text one
// (a rollout half done) is refused for good, on every attempt at once, with
// an error that says TLS was refused, and the plain-text node counts it as
// a TLS refusal (RefusedTLS: "plain text..."), not as malformed input.
func TestPlainNodeRefusesTLSPeerClearly(t *testing.T) {
	ca := newCA(t, "test")
	c, handled := tlsNodes(t, nil, tlsFor(t, ca, "n2")) // n1 speaks plain text
	n1, n2 := c.Nodes[0], c.Nodes[1]
	_, err := n2.Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, []byte("x"))
	require.ErrorIs(t, err, transport.ErrRefused, "the TLS node learns at once it is refused")
	assert.Contains(t, err.Error(), "refused the handshake")
	// A one-way message fails at once too: waiting will not help.
	require.NoError(t, n2.Send(ctxTimeout(t, 20*time.Second), c.ID(0), verbEcho, []byte("one-way")))
	waitFor(t, 5*time.Second, "the one-way message failed as refused", func() bool {
		return n2.Stats().Total().Dropped[transport.ReasonRefused] == 2
	})
	waitFor(t, 5*time.Second, "n1 counts TLS refusals", func() bool {
		return n1.Stats().Refusals[transport.RefusedTLS] >= 1
	})
	assert.Zero(t, n1.Stats().Refusals[transport.RefusedMalformed])
	assert.Zero(t, handled.Load())
}
