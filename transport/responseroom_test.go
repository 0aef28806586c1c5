package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestResponsesHaveRoomWhileOwnSendsFillTheLimits: a node whose own
// one-way sends fill its outbound Node limit (to a third node that
// stopped reading) or its PerPeer limit (to the caller itself, whose
// handlers stalled) still answers the caller's requests. Its responses
// took the same room as its sends, so every request failed with
// ErrOverloaded — about the responder's own traffic, not the caller's —
// until the stalled connection's write timeout freed the room, or for as
// long as sends kept it full. Now sends leave a share of the Node and
// PerPeer limits that only responses may take.
func TestResponsesHaveRoomWhileOwnSendsFillTheLimits(t *testing.T) {
	const limit = int64(640 << 10)
	for _, tc := range []struct {
		name   string
		limits transport.Limits
		sendTo int // the node the responder's sends go to
	}{
		{"node", transport.Limits{PerConnection: 1 << 20, PerPeer: 2 << 20, Node: limit}, 2},
		{"peer", transport.Limits{PerConnection: 1 << 20, PerPeer: limit, Node: 4 << 20}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stalled := newGate()
			defer stalled.open()
			c := newCluster(t, 3, func(i int, cfg *transport.Config) {
				cfg.Memory.MaxMessageSize = 128 << 10
				cfg.Memory.Inbound = tightInbound
				if i == 1 {
					cfg.Memory.Outbound = tc.limits
				}
			})
			caller, responder := c.Nodes[0], c.Nodes[1]
			c.Nodes[tc.sendTo].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
				return nil, stalled.wait(ctx)
			}))
			responder.Handle(verbEcho, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
				return m.Payload, nil
			}))
			_, err := caller.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("hello"))
			require.NoError(t, err)

			// The responder's own sends fill its room: the receiving
			// node's handlers stall, it stops reading, and the sends
			// queue up until the limit under test, not the connection's,
			// refuses the next one. That holds once the sockets' buffers
			// are full too: until then a send may be refused while the
			// writer has not yet moved the queue into them, and then it
			// does. So the room counts as filled when sends are refused,
			// more than half the limit is held, and nothing more was
			// written to the sockets, three looks in a row.
			var written uint64
			steady := 0
			waitFor(t, 20*time.Second, "the responder's sends to fill its room", func() bool {
				refused := false
				for range 100 {
					err := responder.Send(context.Background(), c.ID(tc.sendTo), verbData, make([]byte, 1000))
					if errors.Is(err, transport.ErrOverloaded) {
						refused = true
						break
					}
				}
				st := responder.Stats()
				var now uint64
				for _, cs := range st.Conns {
					if cs.Peer == c.ID(tc.sendTo) {
						now += cs.BytesSent
					}
				}
				if refused && st.OutboundBytes > limit/2 && now == written {
					steady++
				} else {
					steady = 0
				}
				written = now
				return steady == 3
			})
			require.Greater(t, responder.Stats().OutboundBytes, limit/2)

			// Up to 80 KiB of room is left, for two of the largest
			// responses at once: the caller may have one before its
			// bytes are given back at the responder.
			for _, size := range []int{10, 1000, 30 << 10} {
				for range 5 {
					resp, err := caller.Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, make([]byte, size))
					require.NoError(t, err, "a request of %d bytes", size)
					assert.Len(t, resp, size)
				}
			}
			assert.LessOrEqual(t, responder.Stats().OutboundBytes, tc.limits.Node, "the responder's outbound bytes stay within its Node limit")
		})
	}
}
