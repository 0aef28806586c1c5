package transport_test

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestIdleStreamSessionGivesBackItsRoom: an accepted stream session takes
// Streams.SessionBuffer of its acceptor's inbound limits for as long as it
// lives, and a session whose streams had all closed lived until its
// transport closed: it was never idle-closed, as a lane's connection is
// after Timeouts.Idle. Once the sessions of peers that had used a stream
// once held what the acceptor's limits give stream connections, every
// other peer's OpenStream was refused (ErrOverloaded, "no inbound
// capacity") for good, with no stream open anywhere. The opener now
// closes a session on which no stream was open for Timeouts.Idle.
func TestIdleStreamSessionGivesBackItsRoom(t *testing.T) {
	const idle = 200 * time.Millisecond
	c := newCluster(t, 3, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Idle = idle
		if i == 2 { // room for one session beside a 1 MiB message, not two
			cfg.Memory.MaxMessageSize = 1 << 20
			cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 8 << 20, Node: 6 << 20}
		}
	})
	echoStreams(c)
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(2), verbRepair)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = c.Nodes[1].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(2), verbRepair)
	require.ErrorIs(t, err, transport.ErrOverloaded, "n1's session holds the room while it lives")

	waitFor(t, 20*idle, "n1's idle session closed", func() bool { return !c.Nodes[0].Health().Peers[1].StreamSession })
	var opened *transport.Stream
	waitFor(t, 20*idle, "n2's stream opened once n1's idle session gave back its room", func() bool {
		opened, err = c.Nodes[1].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(2), verbRepair)
		return err == nil
	})
	require.NoError(t, opened.Close())

	// A session with a stream open is not idle, however quiet the stream.
	held, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer held.Close()
	time.Sleep(5 * idle) // nothing is to happen meanwhile
	require.True(t, c.Nodes[0].Health().Peers[0].StreamSession, "the session of an open stream stays")
	_, err = held.Write([]byte("still there"))
	require.NoError(t, err)
	require.NoError(t, held.CloseWrite())
	got, err := io.ReadAll(held)
	require.NoError(t, err)
	require.Equal(t, "still there", string(got))
}
