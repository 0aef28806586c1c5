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

// TestStreamWriteToAPeerThatTricklesFasterThanHalfAWindowPerTimeout:
// Stream.Write said a peer that reads slower than a chunk (64 KiB) per
// Timeouts.Write is cut off, so one that reads faster gets every byte. In
// a session the writer's window opens only when smux's window update
// comes, after the reader took half its window (StreamBuffer/2, 128 KiB
// by default): a peer taking 100 KiB a second, over one and a half chunks
// a second, had each window open 1.3 s apart, and the Write failed at its
// 1 s Timeouts.Write. Stream.Write now says that in a session the unit is
// that half window; a peer taking more than one per Timeouts.Write gets
// every byte. This one takes two: a window opens every 500 ms against a
// 1 s Timeouts.Write, so a loaded machine's scheduling delays do not cut
// it off.
func TestStreamWriteToAPeerThatTricklesFasterThanHalfAWindowPerTimeout(t *testing.T) {
	const write = time.Second
	const piece, every = 32 << 10, 125 * time.Millisecond // 256 KiB/s: 2 half windows per Timeouts.Write
	halfWindow := transport.DefaultStreamConfig().StreamBuffer / 2
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
	const total = 1 << 20 // the windows and the read-ahead, 512 KiB, and 2 seconds' worth
	var werr error
	for sent := 0; sent < total && werr == nil; sent += len(buf) {
		_, werr = s.Write(buf)
	}
	took := time.Since(start)
	rate := float64(read.Load()) / took.Seconds()
	t.Logf("the reader took %d bytes in %v: %.0f KiB/s; half a window per Timeouts.Write is %.0f KiB/s", read.Load(), took, rate/1024, float64(halfWindow)/write.Seconds()/1024)
	require.Greater(t, rate, float64(halfWindow)/write.Seconds(), "the reader read faster than half a window per Timeouts.Write")
	assert.NoError(t, werr, "after %v", took)
}
