package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestASenderBehindAPausedReceiverKeepsItsBacklogOutOfTheKernel: n2's
// handler stalls and its reader pauses; n1 sends until its queue is
// full. Bytes n1's socket holds unsent are outside its limits, and a
// message's time among them does not count against its deadline: with
// no bound, a send queue of megabytes held messages that reached their
// handlers seconds after their callers gave up, once n2 read again (the
// simulator's slow node, after its disk stalled). The lane's outbound
// sockets now hold at most SocketConfig.NotSentLowat unsent (and what
// the write that crossed it added), DefaultNotSentLowat by default
// (3.7 MiB unsent without it on this test's machine); the rest
// waits in the queue, within the limits, where its deadline counts.
func TestASenderBehindAPausedReceiverKeepsItsBacklogOutOfTheKernel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lowat  int // Lanes.Sockets[Small].NotSentLowat
		want   int // TCP_NOTSENT_LOWAT of the socket
		bounds bool
	}{
		{"default", 0, transport.DefaultNotSentLowat, true},
		{"the lane's own", 64 << 10, 64 << 10, true},
		{"none", -1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate()
			defer g.open()
			dialer := &recordingDialer{}
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Memory.Inbound = tightInbound
				cfg.Memory.MaxMessageSize = 256 << 10
				cfg.Lanes.Sockets[routing.Small].NotSentLowat = tc.lowat
				if i == 0 {
					cfg.Dialer = dialer
				}
			})
			c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, _ *transport.Message) ([]byte, error) {
				return nil, g.wait(ctx)
			}))
			require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, 5*time.Second), c.ID(1), verbData, []byte("x")))
			require.NoError(t, c.WaitConnected(ctxTimeout(t, 5*time.Second), 0, 1))
			sock := dialer.last()
			raw, err := sock.SyscallConn()
			require.NoError(t, err)
			got, err := sockstat.NotSentLowat(sock)
			if errors.Is(err, sockstat.ErrUnsupported) {
				t.Skip(err)
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)

			payload := make([]byte, 1000)
			for {
				err := c.Nodes[0].Send(context.Background(), c.ID(1), verbData, payload)
				if err != nil {
					require.ErrorIs(t, err, transport.ErrOverloaded)
					break
				}
			}
			waitFor(t, 10*time.Second, "n2's reader paused", func() bool { return c.Nodes[1].Stats().Total().Throttled > 0 })
			// The writer writes until the socket takes no more.
			var unsent uint32
			waitFor(t, 10*time.Second, "the socket's send queue settled", func() bool {
				before, err := sockstat.Info(raw)
				require.NoError(t, err)
				time.Sleep(50 * time.Millisecond)
				after, err := sockstat.Info(raw)
				require.NoError(t, err)
				unsent = after.NotSentBytes
				return after.HasNotSentBytes && before.NotSentBytes == after.NotSentBytes
			})
			t.Logf("unsent %d KiB with TCP_NOTSENT_LOWAT %d KiB", unsent>>10, got>>10)
			if tc.bounds {
				// The kernel stops taking bytes once the bound is
				// crossed, within a segment or two of 64 KiB.
				assert.LessOrEqual(t, int(unsent), got+128<<10, "unsent beyond the bound")
			}
		})
	}
}
