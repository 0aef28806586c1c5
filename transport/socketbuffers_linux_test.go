package transport_test

import (
	"context"
	"math"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// socketBuffers returns conn's SO_SNDBUF and SO_RCVBUF as the kernel has
// them.
func socketBuffers(t *testing.T, conn *net.TCPConn) (snd, rcv int) {
	t.Helper()
	raw, err := conn.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		if snd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF); serr != nil {
			return
		}
		rcv, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}))
	require.NoError(t, serr)
	return snd, rcv
}

// TestALanesSocketBuffersAboveWhatTheOptionHolds: SocketConfig's
// SendBuffer and ReceiveBuffer are ints, SO_SNDBUF and SO_RCVBUF C ints
// (32 bits). A size of 4 GiB + 64 KiB, which asks for the largest buffer
// the system allows, was cut to its low 32 bits by setsockopt and set a
// 64 KiB buffer instead, as NotSentLowat's was before; it now sets the
// largest the option holds, as a size of 2 GiB - 1 does.
func TestALanesSocketBuffersAboveWhatTheOptionHolds(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("an int holds no size above what the options hold")
	}
	var huge64 int64 = 4<<30 + 64<<10
	huge := int(huge64)
	var (
		mu    sync.Mutex
		conns []*net.TCPConn
	)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i != 0 {
			return
		}
		cfg.Lanes.Sockets[routing.Small].SendBuffer = huge
		cfg.Lanes.Sockets[routing.Small].ReceiveBuffer = huge
		cfg.Dialer = dialerFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
			if err == nil {
				mu.Lock()
				conns = append(conns, nc.(*net.TCPConn))
				mu.Unlock()
			}
			return nc, err
		})
	})
	handleAll(c, verbData, func(context.Context, *transport.Message) ([]byte, error) { return nil, nil })
	_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbData, []byte("small"))
	require.NoError(t, err)

	// What the largest size the options hold gives, on a socket of the
	// same kind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ref, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer ref.Close()
	require.NoError(t, ref.(*net.TCPConn).SetWriteBuffer(math.MaxInt32))
	require.NoError(t, ref.(*net.TCPConn).SetReadBuffer(math.MaxInt32))
	wantSnd, wantRcv := socketBuffers(t, ref.(*net.TCPConn))
	if wantSnd <= 2*(64<<10) || wantRcv <= 2*(64<<10) {
		t.Skipf("the system's largest socket buffers (%d, %d) are no larger than the truncated size's", wantSnd, wantRcv)
	}

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, conns, 1, "the small lane's connection")
	snd, rcv := socketBuffers(t, conns[0])
	assert.Equal(t, wantSnd, snd, "SO_SNDBUF of a SendBuffer of %d bytes", huge)
	assert.Equal(t, wantRcv, rcv, "SO_RCVBUF of a ReceiveBuffer of %d bytes", huge)
}
