package transporttest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestMemConnHalfClosesAsTCPDoes: a Network connection has CloseWrite, as
// a *net.TCPConn has: the peer reads what was written, then io.EOF, while
// the peer's bytes still reach this end; this end's later writes fail with
// EPIPE. Across a partition the end waits for Heal, as the bytes do.
func TestMemConnHalfClosesAsTCPDoes(t *testing.T) {
	n := transporttest.NewNetwork()
	defer n.Close()
	l, err := n.Host("b").Listen("tcp", "b:0")
	require.NoError(t, err)
	defer l.Close()
	client, err := n.Host("a").DialContext(t.Context(), "tcp", l.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := l.Accept()
	require.NoError(t, err)
	defer server.Close()

	cw, ok := client.(interface{ CloseWrite() error })
	require.True(t, ok, "a Network connection has no CloseWrite: the transport's half-closes (file transfers, streams on their own connection) close at once instead")

	n.Partition("a", "b")
	_, err = client.Write([]byte("last words"))
	require.NoError(t, err)
	require.NoError(t, cw.CloseWrite())
	_ = server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = server.Read(make([]byte, 64))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "neither the bytes nor the end cross a partition")
	n.Heal("a", "b")

	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(server)
	require.NoError(t, err, "the bytes, then io.EOF")
	assert.Equal(t, "last words", string(got))

	_, err = server.Write([]byte("answer"))
	require.NoError(t, err, "the other direction stays open")
	require.NoError(t, server.Close())
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err = io.ReadAll(client)
	require.NoError(t, err)
	assert.Equal(t, "answer", string(got), "the half-closed end still reads")

	_, err = client.Write([]byte("more"))
	assert.ErrorIs(t, err, syscall.EPIPE, "no write after CloseWrite")
	var opErr *net.OpError
	assert.ErrorAs(t, err, &opErr)
}

// TestInMemorySendFileOfAFileThatShrankGetsTheVerdict: the file shrinks
// while it is sent, so the sender stops short of the length it announced
// and half-closes its side, so that the receiver sees the end and answers.
// On a Network, whose connections had no CloseWrite, the receiver waited
// for the missing bytes: the sender's wait for the verdict met
// Timeouts.Handshake and it returned its own error after that wait,
// without the receiver's verdict, where over TCP it gets the verdict at
// once.
func TestInMemorySendFileOfAFileThatShrankGetsTheVerdict(t *testing.T) {
	const handshake = 2 * time.Second
	c := transporttest.New(t, 2, transporttest.Options{InMemory: true, Tweak: func(_ int, cfg *transport.Config) {
		cfg.Timeouts.Handshake = handshake
		cfg.Timeouts.Keepalive = time.Minute // the receiver's allowed silence must not end it first
	}})
	const verbFile transport.Verb = 30
	const size = 8 << 20
	path := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.WriteFile(path, make([]byte, size), 0o600))
	src, err := os.Open(path)
	require.NoError(t, err)
	defer src.Close()

	received := make(chan error, 1)
	c.Nodes[1].HandleFile(verbFile, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		// Sender and receiver share the process: the file shrinks before
		// the receiver reads a byte, after the sender checked its size.
		if err := os.Truncate(path, 1<<20); err != nil {
			return err
		}
		_, err := io.Copy(io.Discard, ft.Reader())
		received <- err
		return err
	}))

	start := time.Now()
	_, err = c.Nodes[0].SendFile(context.Background(), c.ID(1), verbFile, src, 0, size)
	elapsed := time.Since(start)
	require.Error(t, err)
	var remote *transport.RemoteError
	assert.True(t, errors.As(err, &remote), "the receiver's verdict, not the sender's own error after a wait: %v", err)
	assert.Less(t, elapsed, handshake, "SendFile returned at the verdict, not at Timeouts.Handshake")
	select {
	case err := <-received:
		assert.ErrorIs(t, err, transport.ErrIncomplete)
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver still waits for the bytes the sender will never send")
	}
}
