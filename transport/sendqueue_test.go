//go:build linux

package transport

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/wire"
)

// TestSendQueueBoundCountsWhatWasWritten: a caller may write its own
// message only while the socket's send queue is low, and the writer keeps
// a bound on that queue — the depth last read plus what was written since
// — so that it need not ask the socket every time. After a megabyte
// written to a peer that does not read, the bound must send it back to
// the socket, which holds that megabyte, not let the caller write into
// the full socket.
func TestSendQueueBoundCountsWhatWasWritten(t *testing.T) {
	client, probe := deafSocket(t)
	c := &outConn{}
	c.conn = &liveConn{Conn: client, probe: probe, sendBound: newQueueBound(client)}
	const limit = 4 << 10
	assert.True(t, c.sendQueueLow(limit), "a new connection's queue is empty")

	c.frames.reserve(1)
	c.frames.add(wire.FrameBatch, 0, make([]byte, 1<<20))
	require.NoError(t, c.frames.flush(client))
	requireQueued(t, probe, limit)
	assert.False(t, c.sendQueueLow(limit), "the bound counts the megabyte written since the queue was read")
}

// TestBackQueueBoundCountsWhatWasWritten is the same for a back channel,
// where a handler may write its own answer: both its writers — the reply
// writer's frames and sendBack's beats and grants — count.
func TestBackQueueBoundCountsWhatWasWritten(t *testing.T) {
	const limit = 4 << 10
	for name, write := range map[string]func(ic *inConn) error{
		"reply writer": func(ic *inConn) error {
			w := ic.replies.Load()
			w.frames.reserve(1)
			w.frames.add(wire.FrameBatch, 0, make([]byte, 1<<20))
			return w.frames.flush(ic.conn)
		},
		"sendBack": func(ic *inConn) error { return ic.sendBack(wire.FrameRefuse, 1, make([]byte, 1<<20)) },
	} {
		t.Run(name, func(t *testing.T) {
			client, probe := deafSocket(t)
			ic := &inConn{t: &Transport{}, conn: client, probe: probe, backBound: newQueueBound(client)}
			ic.replies.Store(&replyWriter{})
			ic.backMu.Lock()
			defer ic.backMu.Unlock()
			assert.True(t, ic.backQueueLow(limit), "a new connection's queue is empty")
			ic.backMu.Unlock()
			require.NoError(t, write(ic))
			ic.backMu.Lock()
			requireQueued(t, probe, limit)
			assert.False(t, ic.backQueueLow(limit), "the bound counts the megabyte written since the queue was read")
		})
	}
}

// deafSocket returns the client end of a loopback TCP connection whose
// peer never reads and keeps a 64 KiB window, with a send buffer that
// takes a megabyte without waiting, and a probe of its socket.
func deafSocket(t *testing.T) (net.Conn, *sockstat.Probe) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { // accepted sockets inherit it: a small, fixed window
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			accepted <- conn // never read
		}
		close(accepted)
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	if far, ok := <-accepted; ok {
		t.Cleanup(func() { far.Close() })
	}
	require.NoError(t, client.(*net.TCPConn).SetWriteBuffer(4<<20))
	probe, err := sockstat.NewProbe(client.(*net.TCPConn))
	require.NoError(t, err)
	return client, probe
}

// requireQueued checks that the socket holds more than limit bytes.
func requireQueued(t *testing.T, probe *sockstat.Probe, limit int) {
	t.Helper()
	queued, err := probe.SendQueue()
	require.NoError(t, err)
	require.Greater(t, queued, limit, "the peer's window took at most 64 KiB of the megabyte")
}

// TestSendQueueBoundOnlyForPlainTCP: under TLS the socket queues more
// bytes than were written (record headers and MACs), so no bound is kept
// and every check asks the socket.
func TestSendQueueBoundOnlyForPlainTCP(t *testing.T) {
	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	b := newQueueBound(a)
	b.saw(0, 0)
	assert.Equal(t, -1, b.seen, "no bound kept for a connection that is not plain TCP")
}
