package transport

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair returns the two ends of a loopback TCP connection, the first
// as a wakeConn that is not watched.
func tcpPair(t *testing.T) (*wakeConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s, ok := <-accepted
	require.True(t, ok, "accept")
	wc := &wakeConn{TCPConn: c.(*net.TCPConn), waker: theReadWaker()}
	t.Cleanup(func() {
		wc.Close()
		s.Close()
	})
	return wc, s
}

// readInBackground reads one byte from c in a goroutine and returns the
// channel its error arrives on, once the read is under way.
func readInBackground(t *testing.T, c *wakeConn) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		done <- err
	}()
	eventually(t, c.reading.Load, "the read to start")
	return done
}

// TestWakeConnTurnsAWakeUpIntoARead: wake-ups before the reader's own
// deadline never reach it as errors; the read returns the bytes once
// they come.
func TestWakeConnTurnsAWakeUpIntoARead(t *testing.T) {
	c, peer := tcpPair(t)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Hour)))
	done := readInBackground(t, c)
	for range 100 {
		c.wake()
		runtime.Gosched()
	}
	select {
	case err := <-done:
		t.Fatalf("a wake-up ended the read: %v", err)
	default:
	}
	_, err := peer.Write([]byte{1})
	require.NoError(t, err)
	require.NoError(t, <-done)

	require.NoError(t, c.SetReadDeadline(time.Time{}))
	done = readInBackground(t, c)
	c.wake()
	_, err = peer.Write([]byte{2})
	require.NoError(t, err)
	require.NoError(t, <-done, "without a deadline too")
}

// TestWakeConnKeepsItsReadersDeadlines: the reader's own deadline still
// ends its read, wake-ups or not, and so does a deadline in the past set
// by another goroutine to interrupt it.
func TestWakeConnKeepsItsReadersDeadlines(t *testing.T) {
	c, _ := tcpPair(t)
	start := time.Now()
	require.NoError(t, c.SetReadDeadline(start.Add(50*time.Millisecond)))
	done := readInBackground(t, c)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				c.wake()
				runtime.Gosched()
			}
		}
	}()
	err := <-done
	close(stop)
	require.Error(t, err)
	assert.True(t, isTimeout(err), "%v", err)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "not before the deadline")

	require.NoError(t, c.SetReadDeadline(time.Time{}))
	done = readInBackground(t, c)
	require.NoError(t, c.SetReadDeadline(aLongTimeAgo))
	err = <-done
	require.Error(t, err)
	assert.True(t, isTimeout(err), "%v", err)
}

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
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		read.Store(true)
		done <- err
	}()
	eventually(t, c.reading.Load, "the read to start")
	parts := 0
	go func() {
		_, _ = peer.Write([]byte{1})
		for ; parts < 4000 && !read.Load(); parts++ {
			for began := time.Now(); time.Since(began) < 50*time.Microsecond; {
			}
			c.waker.yieldAfterPart()
		}
		done <- nil
	}()
	require.NoError(t, <-done)
	<-done
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
