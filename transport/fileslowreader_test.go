package transport_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/internode/internode/transport"
)

// TestSendFileToAHandlerThatReadsSlowly: a handler that takes the bytes
// steadily but slowly (2 MiB/s: it applies each piece as it reads) had
// its transfer failed by the sender with context.DeadlineExceeded, "no
// verdict from the receiver after the last byte": the verb's request
// timeout ran from the last byte handed to the sender's kernel, while
// megabytes still sat in the two sockets' buffers, unread. The timeout
// now runs again while the handler takes the queued bytes.
func TestSendFileToAHandlerThatReadsSlowly(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Request = 500 * time.Millisecond
	})
	const size, piece, bytesPerSecond = 6 << 20, 64 << 10, 2 << 20
	read := make(chan error, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		r := ft.Reader()
		applying := rate.NewLimiter(rate.Limit(bytesPerSecond), piece) // each piece takes time to apply
		var err error
		for got := int64(0); got < ft.Length && err == nil; {
			var n int64
			n, err = io.CopyN(io.Discard, r, min(piece, ft.Length-got))
			got += n
			if err == nil {
				err = applying.WaitN(ctx, int(n))
			}
		}
		read <- err
		return err
	}))
	src, _ := tempFile(t, size)
	// No deadline in the context: the verb's request timeout bounds the
	// wait for the verdict.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, size)
	select {
	case herr := <-read:
		require.NoError(t, herr, "the handler")
	case <-time.After(10 * time.Second):
		t.Fatal("the handler never finished")
	}
	require.NoError(t, err)
	require.Equal(t, int64(size), n)
}
