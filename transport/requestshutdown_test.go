package transport_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestARequestToANodeShuttingDownOnANewConnectionIsOverloaded: a node
// whose Shutdown has begun answers the requests that reach it "shutting
// down" (ErrOverloaded), so that their callers ask another node at once,
// knowing the request did not run; OpenStream and SendFile read its
// refusal of their connections' handshakes (wire.Busy) as ErrOverloaded
// too. A request on a lane not yet connected (here the large lane) met the
// same refusal at its dial, and failed ErrConnectionReset, whose callers
// must take it that the request may have run.
func TestARequestToANodeShuttingDownOnANewConnectionIsOverloaded(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(payloadEcho))
	finish := shutdownHeldOpen(t, c)

	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("small lane, connected"))
	assert.ErrorIs(t, err, transport.ErrOverloaded, "a request on a connected lane")
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, make([]byte, 256<<10))
	require.Error(t, err)
	assert.ErrorIs(t, err, transport.ErrOverloaded, "a request on a lane whose dial the node shutting down refused")
	assert.NotErrorIs(t, err, transport.ErrConnectionReset, "the request was not written: it did not run")
	assert.NotErrorIs(t, err, transport.ErrRefused, "refused for the moment, not for good")
	finish()
}

// shutdownHeldOpen begins the Shutdown of c's second node while a request
// of the first's is in its handler (verbData), which keeps the drain
// going, and returns once the Shutdown has begun. finish lets the
// handler return, and checks that the request was answered and the
// Shutdown ended cleanly.
func shutdownHeldOpen(t *testing.T, c *transporttest.Cluster) (finish func()) {
	held, release := make(chan struct{}), make(chan struct{})
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		close(held)
		<-release
		return []byte("done"), nil
	}))
	answered := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbData, []byte("in hand"))
		answered <- err
	}()
	<-held
	shut := make(chan error, 1)
	go func() { shut <- c.Nodes[1].Shutdown(ctxTimeout(t, 10*time.Second)) }()
	waitFor(t, 5*time.Second, "n2's Shutdown began", func() bool { return c.Nodes[1].Health().Closed })
	return func() {
		released.Do(func() { close(release) })
		assert.NoError(t, <-answered, "the request in hand is answered")
		assert.NoError(t, <-shut)
	}
}
