package transport_test

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestCancelledLargeRequestIsWithdrawnWhileTheLaneCannotConnect: a large
// request queued to a peer the lane cannot reach now — it waits out its
// reconnect backoff, or its dial hangs — is withdrawn as soon as its
// caller cancels it: counted cancelled, its capacity given back at once.
// The writer looked at withdrawals only once connected, so the request
// kept its 4 MiB of the peer's and the node's outbound capacity until
// the backoff (10 s here) and the next dial had failed, or the hung dial
// ended, and was then counted a connection reset.
func TestCancelledLargeRequestIsWithdrawnWhileTheLaneCannotConnect(t *testing.T) {
	const size = 4 << 20
	cases := []struct {
		name string
		// tweak makes n2 unreachable; dialFails: the first request fails
		// as the dial does, and the lane backs off.
		tweak     func(cfg *transport.Config)
		dialFails bool
	}{
		{"backing off", backsOff, true},
		{"dialling", func(cfg *transport.Config) {
			cfg.Dialer = dialerFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
				<-ctx.Done() // the SYN is lost: the dial ends at Timeouts.Dial
				return nil, ctx.Err()
			})
			cfg.Timeouts.Dial = 10 * time.Second
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, 20*time.Second, func(t *testing.T) {
				tr := unreachableN2(t, func(cfg *transport.Config) {
					cfg.Memory.MaxMessageSize = 2 * size
					tc.tweak(cfg)
				})
				large := func() transport.ConnStats { return laneStats(t, tr, "n2", routing.Large) }
				held := func() (peer, node int64) {
					st := tr.Stats()
					for _, p := range st.Peers {
						if p.Peer == "n2" {
							peer = p.OutboundHeld
						}
					}
					return peer, st.OutboundBytes
				}
				resets := uint64(0)
				if tc.dialFails {
					_, err := tr.Request(context.Background(), "n2", verbData, make([]byte, size))
					require.ErrorIs(t, err, transport.ErrConnectionReset, "the first request fails with the dial")
					synctest.Wait() // the lane sleeps its backoff
					resets = 1
				}

				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				errc := make(chan error, 1)
				go func() {
					_, err := tr.Request(ctx, "n2", verbData, make([]byte, size))
					errc <- err
				}()
				synctest.Wait() // queued; the lane backs off, or dials
				peer, node := held()
				require.GreaterOrEqual(t, peer, int64(size), "the request holds the peer's capacity")
				require.GreaterOrEqual(t, node, int64(size), "and the node's")

				cancel()
				require.ErrorIs(t, <-errc, context.Canceled)
				synctest.Wait() // the bubble's clock has not moved: the backoff, or the dial, goes on
				// What is held now is the cancel the urgent lane waits to
				// send for the request.
				cancelBytes := int64(laneStats(t, tr, "n2", routing.Urgent).PendingBytes)
				peer, node = held()
				assert.Equal(t, cancelBytes, peer, "the peer's capacity is given back at once")
				assert.Equal(t, cancelBytes, node, "and the node's")
				st := large()
				assert.Zero(t, st.PendingBytes, "nothing left queued")
				assert.Equal(t, uint64(1), st.Dropped[transport.ReasonCanceled], "counted cancelled: %v", st.Dropped)

				time.Sleep(11 * time.Second) // past the backoff and the dial
				synctest.Wait()
				st = large()
				assert.Equal(t, uint64(1), st.Dropped[transport.ReasonCanceled], "one outcome: %v", st.Dropped)
				assert.Equal(t, resets, st.Dropped[transport.ReasonConnectionReset], "not a connection reset: %v", st.Dropped)
			})
		})
	}
}
