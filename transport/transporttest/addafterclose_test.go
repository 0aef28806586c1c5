package transporttest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport/transporttest"
)

// TestAddAfterClose: Add after Close started a node that nothing closed
// (its goroutines outlived the test), as Restart did; it fails with
// ErrClosed and starts nothing.
func TestAddAfterClose(t *testing.T) {
	c := transporttest.New(t, 1, transporttest.Options{})
	c.Close()
	tr, err := c.Add(transporttest.Config("n2", "test", c.Members))
	if tr != nil {
		tr.Close()
	}
	require.ErrorIs(t, err, transporttest.ErrClosed)
	assert.Nil(t, tr)
	assert.Len(t, c.Nodes, 1, "no node was added")
	_, found := c.Members.Lookup("n2")
	assert.False(t, found, "no member was added")
}
