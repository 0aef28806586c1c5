package transporttest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProxyConnsDropsWhatKillReset: a connection Kill has reset no longer
// crosses the proxy, so Conns no longer counts it once Kill returns, and
// a second Kill finds nothing to reset; both counted it until the
// proxy's goroutines had noticed the reset.
func TestProxyConnsDropsWhatKillReset(t *testing.T) {
	p, _, _ := frozenPair(t)
	require.Equal(t, 1, p.Conns())
	require.Equal(t, 1, p.Kill())
	assert.Equal(t, 0, p.Conns(), "the reset connection crosses no more")
	assert.Equal(t, 0, p.Kill(), "nothing left to reset")
}
