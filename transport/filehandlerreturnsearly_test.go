package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestAHandlerThatReturnsWithoutTheBytesFailsTheTransferAsItsOwn: a file
// handler that returns nil without taking the transfer's bytes (it finds
// it has the snapshot already, or reads a header with Reader and stops)
// failed the transfer as incomplete ("the handler took 0 of 1048576
// bytes"), ErrIncomplete at the sender, as after a reset: a sender
// retrying such failures sent the whole file again, and the handler
// turned it down again, for ever. The bytes came; the handler did not
// take them: the sender gets ErrHandler, with the count.
func TestAHandlerThatReturnsWithoutTheBytesFailsTheTransferAsItsOwn(t *testing.T) {
	for _, tt := range []struct {
		name string
		read int64 // bytes the handler reads with Reader before it returns nil
	}{
		{"takes nothing", 0},
		{"reads a header", 4096},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
				if tt.read > 0 {
					if _, err := io.CopyN(io.Discard, ft.Reader(), tt.read); err != nil {
						return err
					}
				}
				return nil // not wanted: the handler stops here
			}))
			src, data := tempFile(t, 1<<20)
			_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))

			require.Error(t, err)
			assert.ErrorIs(t, err, transport.ErrHandler, "the receiver's handler failed the transfer")
			assert.NotErrorIs(t, err, transport.ErrIncomplete, "not bytes cut off in transit")
			var remote *transport.RemoteError
			assert.True(t, errors.As(err, &remote), "the receiver's verdict: %v", err)
			assert.Contains(t, err.Error(), "of 1048576 bytes")
		})
	}
}

// TestAHandlerThatDropsACutReadStillReportsItIncomplete: a handler whose
// Reader met the connection's end before the last byte, and that returns
// nil, drops ErrIncomplete: the sender still learns that the transfer was
// cut, not that the handler stopped on its own.
func TestAHandlerThatDropsACutReadStillReportsItIncomplete(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		_, _ = io.Copy(io.Discard, ft.Reader())
		return nil
	}))
	conn := rawFileSender(t, c.Nodes[1].Addr().String(), string(c.ID(0)), verbBootstrap, 1<<20)
	_, err := conn.Write(make([]byte, 4096))
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite(), "the sender stops after 4 KiB of 1 MiB")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	failure, err := wire.ReadFileResult(conn)
	require.NoError(t, err)
	require.NotNil(t, failure, "the transfer failed")
	assert.Equal(t, wire.FailureIncomplete, failure.Code, "%s", failure.Message)
}
