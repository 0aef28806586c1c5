package transporttest

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAClosedConnFailsAsClosedEvenAfterAReset: once an end's owner has
// closed it, its reads and writes fail with net.ErrClosed, as every Go
// net.Conn's do ("use of closed network connection"), even if the
// connection was reset before; and a Network's Close resets connections
// without closing them for their owners: their reads fail with
// ECONNRESET, and their owners' Close succeeds.
func TestAClosedConnFailsAsClosedEvenAfterAReset(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client, _ := connPair(t, n, "a", "b")
	require.Equal(t, 1, n.Cut("a", "b"))
	require.NoError(t, client.Close())
	_, err := client.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed, "read after Close")
	_, err = client.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed, "write after Close")

	m := NewNetwork()
	c, s := connPair(t, m, "a", "b")
	m.Close()
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, syscall.ECONNRESET, "the network's Close resets")
	_, err = s.Write([]byte("x"))
	assert.ErrorIs(t, err, syscall.ECONNRESET, "the network's Close resets")
	assert.NoError(t, c.Close(), "the owner closes its end once")
	assert.NoError(t, s.Close(), "the owner closes its end once")
}
