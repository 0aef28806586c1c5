package transport_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestStreamWriteToAPeerThatTricklesFasterThanAChunkPerTimeout: Stream.Write
// says a peer that reads slower than a chunk (64 KiB) per Timeouts.Write is
// cut off, so one that reads faster gets every byte. In a session the
// writer's window opens only when smux's window update comes, after the
// reader took half its window (StreamBuffer/2, 128 KiB by default): a
// peer taking 100 KiB a second, over one and a half chunks a second, had
// each window open 1.3 s apart, and the Write failed at its 1 s
// Timeouts.Write.
func TestStreamWriteToAPeerThatTricklesFasterThanAChunkPerTimeout(t *testing.T) {
	const write = time.Second
	const piece, every = 16 << 10, 160 * time.Millisecond // 100 KiB/s: 1.56 chunks per Timeouts.Write
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) { cfg.Timeouts.Write = write })
	var read atomic.Int64
	c.Nodes[1].HandleStream(verbStreamSlow, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		buf := make([]byte, piece)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			m, err := io.ReadFull(s, buf)
			read.Add(int64(m))
			if err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStreamSlow)
	require.NoError(t, err)
	defer s.Close()
	start := time.Now()
	buf := make([]byte, 64<<10)
	const total = 1536 << 10 // the windows and the read-ahead, 512 KiB, and ten seconds' worth
	var werr error
	for sent := 0; sent < total && werr == nil; sent += len(buf) {
		_, werr = s.Write(buf)
	}
	took := time.Since(start)
	rate := float64(read.Load()) / took.Seconds()
	t.Logf("the reader took %d bytes in %v: %.0f KiB/s; a chunk per Timeouts.Write is %.0f KiB/s", read.Load(), took, rate/1024, float64(64<<10)/write.Seconds()/1024)
	require.Greater(t, rate, float64(64<<10)/write.Seconds(), "the reader read faster than a chunk per Timeouts.Write")
	assert.NoError(t, werr, "after %v", took)
}
