package transport

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowOnceConn is a connection (not a *net.TCPConn: SendFile copies
// through a buffer) that takes every write but one: the write that would
// carry its total past stallAt takes the bytes up to it and then meets
// its deadline, as a receiver slow for a moment makes it.
type slowOnceConn struct {
	net.Conn // nil: only what sendFileBytes calls is here
	written  int64
	stallAt  int64
	stalled  bool
}

type deadlineMet struct{}

func (deadlineMet) Error() string   { return "i/o timeout" }
func (deadlineMet) Timeout() bool   { return true }
func (deadlineMet) Temporary() bool { return true }

func (c *slowOnceConn) Write(p []byte) (int, error) {
	if !c.stalled && c.written+int64(len(p)) > c.stallAt {
		c.stalled = true
		n := int(c.stallAt - c.written)
		c.written += int64(n)
		return n, deadlineMet{}
	}
	c.written += int64(len(p))
	return len(p), nil
}

func (c *slowOnceConn) SetWriteDeadline(time.Time) error { return nil }

// TestRateLimitedSendFileChargesEachByteOnce: a chunk whose write met its
// deadline part way is resumed from its first byte not written, and that
// rest was paid for with the chunk. The next chunk's wait asked the rate
// limiter for a whole chunk from there, so the rest was charged twice
// and a transfer under a limit went slower than it, by half a chunk for
// each such write here.
func TestRateLimitedSendFileChargesEachByteOnce(t *testing.T) {
	const (
		mib    = 1 << 20
		rate   = 1 * mib // bytes a second; the limiter's burst and chunk
		length = 4 * mib
	)
	path := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(path, make([]byte, length), 0o600))
	synctest.Test(t, func(t *testing.T) {
		f, err := os.Open(path)
		require.NoError(t, err)
		defer f.Close()
		cfg := DefaultConfig()
		cfg.Files.RateLimit = rate
		cfg.Timeouts.Keepalive = 0 // chunks of a second's worth
		tr := &Transport{cfg: cfg, fileLimiter: newFileLimiter(cfg.Files)}
		p := &peer{ctx: context.Background()}
		conn := &slowOnceConn{stallAt: mib + mib/2} // half of the second chunk, then the deadline
		start := time.Now()
		sent, err := tr.sendFileBytes(context.Background(), p, conn, f, length, false, context.Background(), func(int64, int64) {})
		require.NoError(t, err)
		require.EqualValues(t, length, sent)
		require.EqualValues(t, length, conn.written)
		// The limiter started full (its burst) and has filled at its
		// rate since: what it holds now is that less what was charged.
		elapsed := time.Since(start)
		charged := float64(tr.fileLimiter.Burst()) + rate*elapsed.Seconds() - tr.fileLimiter.Tokens()
		assert.InDelta(t, float64(length), charged, 1, "bytes charged to the rate limiter, for %d sent", length)
		assert.Equal(t, 3*time.Second, elapsed, "4 MiB at 1 MiB/s after a 1 MiB burst")
	})
}
