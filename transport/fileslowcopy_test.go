package transport_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestSendFileOverANonTCPConnToASlowReceiver: a connection that is not a
// *net.TCPConn (a Config.Dialer's, an in-memory network's) and not TLS
// carries a file in buffered copies instead of sendfile, and nothing
// else should change: a receiver that takes bytes all along, if slowly,
// does not fail the send, as SendFile's doc says of every connection but
// TLS (whose write that meets its deadline breaks the connection). The
// copy was held to TLS's rule, a Files.Chunk within each Timeouts.Write,
// so a receiver taking 640 KB/s failed a send of 1 MiB chunks under a 1 s
// Write ("the receiver took 589824 of a 1048576-byte chunk in 1s"),
// where on plain TCP it succeeded.
func TestSendFileOverANonTCPConnToASlowReceiver(t *testing.T) {
	for _, mode := range fileModes {
		t.Run(mode.name, func(t *testing.T) {
			inBubble(t, 60*time.Second, func(t *testing.T) {
				c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
					cfg.Telemetry.DisableSocketMeasurement = true
					cfg.Timeouts.Write = time.Second
					cfg.Files.Chunk = 1 << 20
				}})
				require.NoError(t, err)
				defer c.Close()
				got := make(chan error, 1)
				var received bytes.Buffer
				c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
					// 64 KiB every 100 ms: never silent for long, but
					// less than a chunk in a Write's time.
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					r := ft.Reader()
					buf := make([]byte, 64<<10)
					var err error
					for err == nil {
						<-tick.C
						var n int
						n, err = io.ReadFull(r, buf)
						received.Write(buf[:n])
					}
					if err == io.EOF {
						err = nil
					}
					got <- err
					return err
				}))
				src, data := tempFile(t, 4<<20) // a multiple of 64 KiB
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				n, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(len(data)), mode.opts...)
				require.NoError(t, err, "a receiver taking bytes all along, %d bytes sent", n)
				require.NoError(t, <-got)
				assert.True(t, bytes.Equal(data, received.Bytes()), "the range arrives byte for byte")
			})
		})
	}
}
