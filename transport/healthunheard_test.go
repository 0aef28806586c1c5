package transport_test

import (
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestAPeerNeverHeardIsNotUpOnceItsLaneIdles: the peer takes the
// handshake and then says nothing (a process frozen right behind its
// reply), and the lane's connection is closed for being idle before the
// keepalive check would have judged it dead. Health reported the peer
// unknown while the connection was open, as a peer never heard is, and up
// once the lane had closed for idleness: a closed idle lane counted as one
// that ended cleanly, though nothing was ever heard from the peer on it.
// Run in a synctest bubble over the in-memory network: the idle timeout
// passes on the fake clock.
func TestAPeerNeverHeardIsNotUpOnceItsLaneIdles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := transporttest.NewNetwork()
		defer network.Close()
		ln, err := network.Host("mute").Listen("tcp", "mute:1")
		require.NoError(t, err)
		addr := acceptingPeerOn(t, ln, func(net.Conn) {}, func(conn net.Conn) {
			_, _ = io.Copy(io.Discard, conn) // reads all, says nothing
		})
		cfg := transporttest.Config("n1", "test", cluster.NewStatic(cluster.Member{ID: "mute", Addr: addr}))
		network.Host("n1").Configure(&cfg)
		cfg.Timeouts.Idle = 2 * time.Second // before Timeouts.Keepalive (5 s) finds it silent
		cfg.Telemetry.DisableSocketMeasurement = true
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		tr.Start()
		defer tr.Close()

		require.NoError(t, tr.Send(context.Background(), "mute", verbData, []byte("a")))
		time.Sleep(time.Second)
		synctest.Wait()
		h := tr.Health()
		ph, _ := h.Peer("mute")
		require.Equal(t, transport.LaneDialing, ph.Lanes[routing.Small].State, "setup: handshaken, never heard")
		require.Equal(t, transport.PeerUnknown, ph.Status, "setup: a peer never heard is not up")

		time.Sleep(2 * time.Second) // past Timeouts.Idle, short of Timeouts.Keepalive
		synctest.Wait()
		h = tr.Health()
		ph, _ = h.Peer("mute")
		require.Equal(t, transport.LaneIdle, ph.Lanes[routing.Small].State, "setup: closed for being idle")
		require.True(t, ph.Lanes[routing.Small].LastRead.IsZero(), "setup: nothing was ever read from the peer")
		assert.Equal(t, transport.PeerUnknown.String(), ph.Status.String(), "a peer never heard: %+v", ph.Lanes[routing.Small])
		assert.False(t, h.Ready(transport.ReadyAll), "ready on a peer never heard")
	})
}
