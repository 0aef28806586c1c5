package transporttest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestConnsAndCutCountEachConnectionOnce: Conns and Cut count
// connections, not ends halved. A connection one end has closed and the
// other holds open (a socket in CLOSE_WAIT) is still open, and Cut resets
// its open end; two such connections are two, not one.
func TestConnsAndCutCountEachConnectionOnce(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client1, _ := connPair(t, n, "a", "b")
	_, server2 := connPair(t, n, "a", "b")
	connPair(t, n, "a", "b") // both ends open
	client1.Close()          // connection 1: the server's end is open
	server2.Close()          // connection 2: the client's end is open

	assert.Equal(t, 3, n.Conns("a", "b"), "each connection with an end open counts once")
	assert.Equal(t, 3, n.Cut("a", "b"), "Cut resets each of them")
	assert.Equal(t, 3, n.Conns("a", "b"), "reset ends stay open until their owners close them")
}
