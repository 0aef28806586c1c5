package freeport

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The ports are distinct, below the ephemeral range, and free for TCP and
// UDP once Loopback returns.
func TestLoopbackPortsAreFreeAndBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	ports, err := Loopback(5, true)
	require.NoError(t, err)
	require.Len(t, ports, 5)
	seen := map[int]bool{}
	for _, p := range ports {
		assert.Less(t, p, low)
		assert.GreaterOrEqual(t, p, 1024)
		assert.False(t, seen[p], "port %d twice", p)
		seen[p] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		require.NoError(t, err, "TCP %s", addr)
		pc, err := net.ListenPacket("udp", addr)
		require.NoError(t, err, "UDP %s", addr)
		ln.Close()
		pc.Close()
	}
}

// A port returned once is not returned again, though it is free: its
// caller may not have bound it yet. (Among 2000 random picks of some
// 16 000 ports, two would be the same all but surely.)
func TestLoopbackNeverGivesAPortTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		ports, err := Loopback(1, false)
		require.NoError(t, err)
		require.False(t, seen[ports[0]], "port %d twice", ports[0])
		seen[ports[0]] = true
	}
}

// A port taken is not given.
func TestLoopbackSkipsATakenPort(t *testing.T) {
	ports, err := Loopback(1, false)
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	defer ln.Close()
	_, ok := hold(ports[0], false)
	assert.False(t, ok, "a port another socket listens on")
	for range 20 {
		again, err := Loopback(1, false)
		require.NoError(t, err)
		assert.NotEqual(t, ports[0], again[0])
	}
}
