package transport

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestFileChunkUnderTheRateLimit pins fileChunk's sizes: a quarter of
// the Keepalive's worth (a second's at most), shared by the transfers
// sending, at least 4 KiB while that comes within half the Keepalive,
// and never more than the limiter's burst; a rate near the largest int64
// does not overflow into the smallest chunk.
func TestFileChunkUnderTheRateLimit(t *testing.T) {
	for _, tc := range []struct {
		rate    int64
		sending int32
		chunk   int
		want    int64
	}{
		{64 << 20, 1, 4 << 20, 4 << 20},          // Chunk
		{1 << 20, 1, 4 << 20, 1 << 20},           // a second's worth
		{1 << 20, 4, 4 << 20, 256 << 10},         // shared by four
		{16 << 10, 1, 4 << 20, 16 << 10},         //
		{3 << 10, 1, 4 << 20, 4 << 10},           // 4 KiB comes within 2 s
		{512, 1, 4 << 20, 1 << 10},               // 4 KiB would not: twice the share
		{2 << 10, 4, 4 << 20, 1 << 10},           // nor, shared by four
		{1, 4, 4 << 20, 1},                       // a byte at least
		{math.MaxInt64, 1, 4 << 20, 4 << 20},     // no overflow
		{math.MaxInt64 - 1, 3, 4 << 20, 4 << 20}, //
		{math.MaxInt64, 1, math.MaxInt, math.MaxInt64},
		{1 << 40, 4, math.MaxInt, 1 << 38},
	} {
		tr := &Transport{cfg: DefaultConfig()}
		tr.cfg.Files.RateLimit = tc.rate
		tr.cfg.Files.Chunk = tc.chunk
		tr.fileLimiter = newFileLimiter(tr.cfg.Files)
		tr.filesSending.Store(tc.sending)
		assert.Equal(t, tc.want, tr.fileChunk(), "rate %d B/s, %d sending, Keepalive %v", tc.rate, tc.sending, tr.cfg.Timeouts.Keepalive)
	}
}
