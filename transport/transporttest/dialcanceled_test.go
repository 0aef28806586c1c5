package transporttest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport/transporttest"
)

// TestDialWithAnEndedContextConnectsNothing: DialContext with a context
// already ended returns its error and opens no connection, as a
// net.Dialer's does. It connected whenever the hosts were not
// partitioned, and a listener accepted a connection its dialler had
// given up on.
func TestDialWithAnEndedContextConnectsNothing(t *testing.T) {
	n := transporttest.NewNetwork()
	defer n.Close()
	l, err := n.Host("b").Listen("tcp", "b:0")
	require.NoError(t, err)
	defer l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c, err := n.Host("a").DialContext(ctx, "tcp", l.Addr().String())
	if c != nil {
		c.Close()
	}
	require.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, c)
	assert.Zero(t, n.Conns("a", "b"), "connections opened")
}
