package transporttest

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frozenPair returns a client connected through p to a server that
// reads everything, once one byte has crossed, and the server's end.
func frozenPair(t *testing.T) (p *Proxy, client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			accepted <- conn
		}
		close(accepted)
	}()
	p, err = NewProxy(ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(p.Close)
	client, err = net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	_, err = client.Write([]byte("x"))
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { server.Close() })
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(server, make([]byte, 1))
	require.NoError(t, err)
	_ = server.SetReadDeadline(time.Time{})
	return p, client, server
}

// TestFrozenProxyHoldsBackAWriter: through a frozen connection nothing
// flows, so a writer's bytes back up as towards a frozen process — its
// socket buffers fill, then its writes wait — rather than vanish as fast
// as it writes them.
func TestFrozenProxyHoldsBackAWriter(t *testing.T) {
	p, client, server := frozenPair(t)
	received := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, server)
		received <- n
	}()
	require.Equal(t, 1, p.Freeze())

	const most = 256 << 20 // far beyond what the sockets' buffers hold
	chunk := make([]byte, 1<<20)
	written := 0
	_ = client.SetWriteDeadline(time.Now().Add(3 * time.Second))
	for written < most {
		n, err := client.Write(chunk)
		written += n
		if err != nil {
			assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			break
		}
	}
	assert.Less(t, written, most/2, "the writer waited once the buffers were full")
	server.Close()
	assert.Zero(t, <-received, "nothing crossed")
}

// TestFrozenProxyPassesNoClose: when one end of a frozen connection
// closes, the other end hears nothing — no FIN, no reset — as across a
// partition; it has to notice the silence itself.
func TestFrozenProxyPassesNoClose(t *testing.T) {
	p, client, server := frozenPair(t)
	require.Equal(t, 1, p.Freeze())
	require.NoError(t, server.Close())
	_ = client.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err := client.Read(make([]byte, 1))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the server's close did not cross the frozen proxy")
}
