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
