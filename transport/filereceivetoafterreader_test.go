package transport_test

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestReceiveToAfterReaderFailsTheTransferAsTheHandlers: a handler that
// reads the transfer's first bytes with Reader (a header of its own, say)
// and then asks ReceiveTo for the rest is refused: ReceiveTo takes a
// whole transfer. That refusal, ErrIncomplete, reached the sender as bytes
// cut off in transit, every byte of which had come: a sender's retry loop
// sent the file again, to be refused again, for ever. It is the handler's
// doing: the sender gets ErrHandler, as for a handler that returns without
// the bytes.
func TestReceiveToAfterReaderFailsTheTransferAsTheHandlers(t *testing.T) {
	c := newCluster(t, 2, nil)
	received := make(chan error, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		if _, err := io.CopyN(io.Discard, ft.Reader(), 4096); err != nil {
			return err
		}
		f, err := os.CreateTemp(t.TempDir(), "dst")
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = ft.ReceiveTo(f)
		received <- err
		return err
	}))
	src, data := tempFile(t, 1<<20)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))

	require.Error(t, <-received, "ReceiveTo after Reader is refused")
	require.Error(t, err)
	var remote *transport.RemoteError
	assert.True(t, errors.As(err, &remote), "the receiver's verdict: %v", err)
	assert.ErrorIs(t, err, transport.ErrHandler, "the handler's use of the transfer failed it")
	assert.NotErrorIs(t, err, transport.ErrIncomplete, "not bytes cut off in transit")
}
