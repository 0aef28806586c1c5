package transport_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// TestStrangersEntriesStayWithinMaxConns: with AcceptUnknownPeers, each
// node ID a connection claims gets an entry, forgotten once quiet by a
// sweep every two seconds. The connections are bounded
// (Security.MaxConns), the entries were not: a peer that handshook
// under a new ID and hung up, again and again, left an entry (some 3 KB)
// for each until the sweep, as many as it could handshake in the
// meantime: about 10,000 in a second and a half, 29 MB of heap. Entries
// of strangers are now bounded by MaxConns too: beyond, a stranger's
// handshake is refused (RefusedTooMany), and the quiet entries are
// forgotten at once.
func TestStrangersEntriesStayWithinMaxConns(t *testing.T) {
	const maxConns, ghosts = 64, 1000
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Security.MaxConns = maxConns
	})
	node := c.Nodes[1]
	accepted := 0
	for g := range ghosts {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(2+g%16))}}
		if conn := dialAsWith(d, node.Addr().String(), fmt.Sprintf("ghost-%d", g), routing.Small); conn != nil {
			accepted++
			conn.Close()
		}
	}
	st := node.Stats()
	t.Logf("%d of %d ghosts accepted, %d refused (too many); %d entries", accepted, ghosts,
		st.Refusals[transport.RefusedTooMany], len(st.Peers))
	assert.LessOrEqual(t, len(st.Peers), maxConns+1, "the strangers' entries (and n1's, had it connected)")
	assert.Equal(t, uint64(ghosts-accepted), st.Refusals[transport.RefusedTooMany], "each ghost refused counted")
	// Members are not strangers: a member is served whatever the ghosts left.
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.Error(t, err) // no handler: the point is that it is answered
	assert.ErrorIs(t, err, transport.ErrUnknownVerb)
}
