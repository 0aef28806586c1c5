package transport_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestHealthOfAPeerThatMovedIsNotDown: n1 talks to n2 through a proxy (n2's
// membership address), then the membership gives n2's own address (an
// Update: the peer moved, or its address was corrected). n2 is alive
// throughout and answers at its new address, but n1's lane, whose
// connection it closed itself for the move, counted that as a lost
// connection: with nothing queued the writer went idle with a failure on
// record, and Health reported n2 down until something was next sent.
func TestHealthOfAPeerThatMovedIsNotDown(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{Proxied: true})
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	n1, n2 := c.Nodes[0], c.ID(1)
	_, err := n1.Request(ctxTimeout(t, 5*time.Second), n2, verbEcho, []byte("ping"))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "n2 up", func() bool {
		return peerHealth(t, n1, n2).Status == transport.PeerUp
	})

	c.Members.Add(cluster.Member{ID: n2, Addr: c.Nodes[1].Addr().String()}) // Update: n2 moved
	waitFor(t, 5*time.Second, "the lane to the old address closes", func() bool {
		return peerHealth(t, n1, n2).Lanes[routing.Small].State != transport.LaneConnected
	})
	require.Eventually(t, func() bool { return peerHealth(t, n1, n2).Status != transport.PeerDown },
		2*time.Second, time.Millisecond, "n2, alive at its new address, is reported down: %+v", peerHealth(t, n1, n2))

	// And it is reachable there.
	_, err = n1.Request(ctxTimeout(t, 5*time.Second), n2, verbEcho, []byte("ping"))
	require.NoError(t, err)
	require.Equal(t, transport.PeerUp, peerHealth(t, n1, n2).Status)
}

// gatedDialer holds every dial until gate closes, then fails it.
type gatedDialer struct{ gate chan struct{} }

func (d *gatedDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	select {
	case <-d.gate:
		return nil, errors.New("dial refused by the test")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestShutdownEndsWhenItsLastQueueEmptiesByFailing: Shutdown waits for a
// message queued to a peer being dialled, and the queue then empties
// without a write: the dial fails, failing the request (and the lane's
// writer, with nothing left, exits), or the peer leaves, failing the
// one-way message. Neither told the waiting Shutdown (only a writer that
// goes on to wait idle did), so Shutdown waited out its context, closed,
// and returned the context's error, though nothing had been left to drain:
// a node's graceful stop took its whole grace period and reported a
// failure.
func TestShutdownEndsWhenItsLastQueueEmptiesByFailing(t *testing.T) {
	for _, how := range []string{"dial fails", "peer leaves"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				network := transporttest.NewNetwork()
				defer network.Close()
				members := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "n2:1"})
				cfg := transporttest.Config("n1", "test", members)
				network.Host("n1").Configure(&cfg)
				dialer := &gatedDialer{gate: make(chan struct{})}
				cfg.Dialer = dialer
				cfg.Telemetry.DisableSocketMeasurement = true
				tr, err := transport.New(cfg)
				require.NoError(t, err)
				tr.Start()
				defer tr.Close()

				sent := make(chan error, 1)
				go func() {
					if how == "dial fails" {
						_, err := tr.Request(context.Background(), "n2", verbEcho, []byte("x"))
						sent <- err
					} else {
						sent <- tr.Send(context.Background(), "n2", verbData, []byte("x"))
					}
				}()
				synctest.Wait() // queued; the lane's dial waits at the gate
				if how == "peer leaves" {
					require.NoError(t, <-sent)
				}
				start := time.Now()
				shut := make(chan error, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					shut <- tr.Shutdown(ctx)
				}()
				synctest.Wait() // Shutdown waits for the queue
				if how == "dial fails" {
					close(dialer.gate)
					require.Error(t, <-sent, "the failed dial fails the request")
				} else {
					members.Remove("n2")
				}
				require.NoError(t, <-shut, "Shutdown with nothing left to drain")
				require.Less(t, time.Since(start), time.Second, "Shutdown waited after the queues emptied")
				total := tr.Stats().Total()
				require.Equal(t, uint64(1), total.Dropped[transport.ReasonConnectionReset]+total.Dropped[transport.ReasonPeerLeft],
					"the message's one outcome: %+v", total.Dropped)
			})
		})
	}
}
