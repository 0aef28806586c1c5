package sockstat_test

import (
	"math"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/sockstat"
)

func TestSetBuffersReadsBack(t *testing.T) {
	client, _ := tcpPair(t)
	const size = 64 << 10 // below the default net.core.{r,w}mem_max
	require.NoError(t, sockstat.SetBuffers(client, size, size))
	snd, rcv, err := sockstat.Buffers(client)
	require.NoError(t, err)
	require.GreaterOrEqual(t, snd, size, "Linux doubles what was set")
	require.GreaterOrEqual(t, rcv, size)

	require.NoError(t, sockstat.SetBuffers(client, 0, 0), "0 leaves the sizes alone")
	snd2, rcv2, err := sockstat.Buffers(client)
	require.NoError(t, err)
	require.Equal(t, snd, snd2)
	require.Equal(t, rcv, rcv2)

	require.Error(t, sockstat.SetBuffers(client, -1, 0))
}

func TestSetBuffersRawBeforeConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	const size = 32 << 10
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return sockstat.SetBuffersRaw(c, size, size)
	}}
	c, err := d.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	snd, rcv, err := sockstat.Buffers(c.(*net.TCPConn))
	require.NoError(t, err)
	require.Equal(t, 2*size, snd)
	require.Equal(t, 2*size, rcv)
}

func TestUserTimeout(t *testing.T) {
	client, _ := tcpPair(t)
	d, err := sockstat.UserTimeout(client)
	require.NoError(t, err)
	require.Zero(t, d, "the system default")

	require.NoError(t, sockstat.SetUserTimeout(client, 1500*time.Microsecond))
	d, err = sockstat.UserTimeout(client)
	require.NoError(t, err)
	require.Equal(t, 2*time.Millisecond, d, "rounded up to whole milliseconds")

	require.Error(t, sockstat.SetUserTimeout(client, -time.Second))
}

func TestSocketCallsAfterClose(t *testing.T) {
	client, _ := tcpPair(t)
	require.NoError(t, client.Close())
	_, _, err := sockstat.Buffers(client)
	require.ErrorIs(t, err, net.ErrClosed)
	require.ErrorIs(t, sockstat.SetUserTimeout(client, time.Second), net.ErrClosed)
}

// TestNotSentLowat: a size is set and read back; one above what the
// option holds (an int32) is taken as the most it holds, not cut to its
// low 32 bits, which made 4 GiB + 64 KiB a 64 KiB limit.
func TestNotSentLowat(t *testing.T) {
	client, _ := tcpPair(t)
	require.NoError(t, sockstat.SetNotSentLowat(client, 128<<10))
	n, err := sockstat.NotSentLowat(client)
	require.NoError(t, err)
	require.Equal(t, 128<<10, n)

	require.NoError(t, sockstat.SetNotSentLowat(client, 1<<32+64<<10))
	n, err = sockstat.NotSentLowat(client)
	require.NoError(t, err)
	require.Equal(t, math.MaxInt32, n, "capped, not truncated")

	require.Error(t, sockstat.SetNotSentLowat(client, -1))
}
