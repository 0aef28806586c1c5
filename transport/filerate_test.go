package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestRateLimitedSendFileEndsWithTheTransportOrTheLeave: a transfer
// waiting on the node's rate limit for its next chunk waited the whole
// reservation out (16 s at 256 B/s) after its transport closed or its
// peer left, though either had already closed its connection; it now
// fails at once with ErrClosed or ErrPeerLeft.
func TestRateLimitedSendFileEndsWithTheTransportOrTheLeave(t *testing.T) {
	for _, how := range []string{"close", "leave"} {
		t.Run(how, func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Files.RateLimit = 256 // a 4 KiB chunk each 16 s, after the first burst
				cfg.Timeouts.Keepalive = time.Minute
			})
			begun := make(chan struct{})
			c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
				r := ft.Reader()
				buf := make([]byte, 4<<10)
				var got int
				for {
					n, err := r.Read(buf)
					if got < 64<<10 && got+n >= 64<<10 {
						close(begun) // the limit's 64 KiB burst is through; the rest waits on it
					}
					got += n
					if err != nil {
						return err
					}
				}
			}))
			src, data := tempFile(t, 1<<20)
			sent := make(chan error, 1)
			go func() {
				_, err := c.Nodes[0].SendFile(context.Background(), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
				sent <- err
			}()
			select {
			case <-begun:
			case <-time.After(10 * time.Second):
				t.Fatal("the transfer did not begin")
			}
			want := transport.ErrClosed
			if how == "close" {
				require.NoError(t, c.Nodes[0].Close())
			} else {
				c.Members.Remove(c.ID(1))
				want = transport.ErrPeerLeft
			}
			select {
			case err := <-sent:
				assert.ErrorIs(t, err, want)
			case <-time.After(5 * time.Second):
				t.Fatalf("SendFile still waiting on the rate limit 5 s after the %s", how)
				<-sent
			}
		})
	}
}
