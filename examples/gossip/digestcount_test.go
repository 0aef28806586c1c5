package gossip_test

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/examples/gossip"
)

// A digest of a few bytes that claims MaxDigestEntries entries cannot
// hold them (each takes at least 4 bytes): DecodeDigest must refuse it
// before it allocates for them, or any peer makes each gossip message
// cost the receiver a table for 4096 nodes.
func TestDecodeDigestRefusesCountItCannotHoldBeforeAllocating(t *testing.T) {
	b := binary.AppendUvarint([]byte{1}, gossip.MaxDigestEntries)
	b = append(b, 1, 'n', 1, 1) // one entry of the 4096 claimed

	_, err := gossip.DecodeDigest(b)
	require.ErrorIs(t, err, gossip.ErrMalformed)

	const calls = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range calls {
		_, _ = gossip.DecodeDigest(b)
	}
	runtime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / calls
	require.Less(t, perCall, uint64(2048), "bytes allocated per refused digest of %d bytes", len(b))
}
