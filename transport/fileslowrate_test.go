package transport_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestSendFileUnderALowRateLimitIsNotCutOff: Validate accepts any
// Files.RateLimit above zero, and the limit is meant to make transfers
// slow, not fail them. Each chunk was at least 4 KiB, so below 4 KiB per
// the receiver's Keepalive (about 820 B/s under the default 5 s, or a
// share that small when transfers share the limit) a transfer past the
// limiter's first burst went silent longer than its receiver tolerates,
// and every such transfer was cut off ("the sender sent nothing for 5s").
func TestSendFileUnderALowRateLimitIsNotCutOff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rate      int64
		transfers int
	}{
		{"one at 512 B/s", 512, 1},
		{"four sharing 2 KiB/s", 2 << 10, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, time.Minute, func(t *testing.T) {
				c, err := transporttest.Start(2, transporttest.Options{InMemory: true, Tweak: func(i int, cfg *transport.Config) {
					cfg.Telemetry.DisableSocketMeasurement = true
					cfg.Files.RateLimit = tc.rate
				}})
				require.NoError(t, err)
				defer c.Close()
				got := receiveToFiles(t, c.Nodes[1])
				// The limiter's first burst (64 KiB) goes at once; the rest
				// at the rate.
				src, data := tempFile(t, 64<<10/tc.transfers+12<<10)
				var sent []<-chan error
				for range tc.transfers {
					f, err := os.Open(src.Name()) // a file offset of its own
					require.NoError(t, err)
					defer f.Close()
					ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					sent = append(sent, sendFileAsync(ctx, c, f, len(data)))
				}
				for i, errs := range sent {
					require.NoError(t, <-errs, "transfer %d of %d under a rate limit of %d B/s", i+1, tc.transfers, tc.rate)
					path := <-got
					b, err := os.ReadFile(path)
					require.NoError(t, err, path)
					assert.True(t, bytes.Equal(data, b))
				}
			})
		})
	}
}
