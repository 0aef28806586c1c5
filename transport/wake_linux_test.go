package transport

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestYieldAfterPartWakesAParkedReader: with every processor busy moving
// large parts, a small lane's reader whose bytes have arrived reads them
// after the next part. Without the wake-up it waited for the runtime to
// poll the network, which it does when a processor runs out of work or
// every 10 ms: about 200 parts of 50 µs here.
func TestYieldAfterPartWakesAParkedReader(t *testing.T) {
	c, peer := tcpPair(t)
	if c.waker == nil {
		t.Skip("readers are woken on Linux only")
	}
	c.waker.watch(c)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // one processor, which the parts keep busy
	var read atomic.Bool
	readErr := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		read.Store(true)
		readErr <- err
	}()
	eventually(t, c.reading.Load, "the read to start")
	parts := 0
	spun := make(chan struct{})
	go func() {
		defer close(spun)
		_, _ = peer.Write([]byte{1})
		for ; parts < 4000 && !read.Load(); parts++ {
			for began := time.Now(); time.Since(began) < 50*time.Microsecond; {
			}
			c.waker.yieldAfterPart()
		}
	}()
	require.NoError(t, <-readErr)
	<-spun
	assert.LessOrEqual(t, parts, 4, "the bytes were read only after %d parts", parts)
}

// TestWakeConnClosingIsNeverWatched: a watch that comes after a close
// began (a dial's cancellation closes the socket while the dial goes on
// to watch it) does not add it to the set, where it would stay.
func TestWakeConnClosingIsNeverWatched(t *testing.T) {
	c, _ := tcpPair(t)
	if c.waker == nil {
		t.Skip("readers are woken on Linux only")
	}
	c.waker.unwatch(c) // Close's first step; the socket is still open
	c.waker.watch(c)
	c.waker.mu.Lock()
	defer c.waker.mu.Unlock()
	for _, w := range c.waker.conns {
		assert.NotSame(t, c, w, "a closing socket was watched")
	}
}
