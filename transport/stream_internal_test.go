package transport

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStreamReadDeadlineInsideAChunkHeader (found in review): a Read
// whose deadline passed with half a chunk header read dropped that half,
// and the next Read parsed a header from the wrong bytes (a chunk of
// 354 405 bytes, over the limit). The half is kept.
func TestStreamReadDeadlineInsideAChunkHeader(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := &Stream{s: a, closed: make(chan struct{}), release: func() {}}
	go func() { _, _ = b.Write([]byte{0, 0}) }() // half a header
	require.NoError(t, s.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err := s.Read(make([]byte, 16))
	require.Error(t, err, "the deadline passes")
	require.NoError(t, s.SetReadDeadline(time.Time{}))
	go func() { _, _ = b.Write([]byte{0, 5, 'h', 'e', 'l', 'l', 'o'}) }() // its rest, and the chunk
	buf := make([]byte, 16)
	n, err := s.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
}

// TestReadAheadBufferFollowsItsBytes: the read-ahead's buffer grows by
// doubling while it is full, up to the window and within the peer's
// allowance, and an emptied one that grew is let go, giving its part of
// the allowance back.
func TestReadAheadBufferFollowsItsBytes(t *testing.T) {
	const window = 256 << 10
	var allowance aheadAllowance
	ra := &readAhead{buf: make([]byte, aheadBase), allowance: &allowance, limit: 1 << 20, window: window}
	ra.end = aheadBase // full
	ra.arrange()
	require.Len(t, ra.buf, 2*aheadBase, "a full buffer doubles")
	require.EqualValues(t, aheadBase, allowance.used.Load(), "taking the growth from the allowance")
	ra.start, ra.end = 10, 2*aheadBase-5
	ra.arrange()
	require.Equal(t, 0, ra.start, "what is left moves to the front")
	require.Equal(t, 2*aheadBase-15, ra.end)
	require.Len(t, ra.buf, 2*aheadBase, "and the buffer keeps its size")
	for ra.end = len(ra.buf); len(ra.buf) < window; ra.end = len(ra.buf) {
		ra.arrange()
	}
	ra.arrange()
	require.Len(t, ra.buf, window, "never past the window")
	require.EqualValues(t, window-aheadBase, allowance.used.Load())
	ra.start = ra.end
	ra.arrange()
	require.Len(t, ra.buf, aheadBase, "an emptied buffer is let go")
	require.Zero(t, ra.start+ra.end)
	require.Zero(t, allowance.used.Load(), "and its growth given back")

	ra.limit = aheadBase / 2 // an allowance others hold
	ra.end = aheadBase
	ra.arrange()
	require.Len(t, ra.buf, aheadBase, "no growth past the allowance")
	require.Zero(t, allowance.used.Load())
}
