package transport

import (
	"net"
	"runtime"
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

// TestWakeConnKeepsAWakeUpWhenAnotherGoroutineMovesTheDeadline: a
// deadline set from another goroutine while a wake-up's timeout is on its
// way to the reader does not turn that wake-up into an error.
func TestWakeConnKeepsAWakeUpWhenAnotherGoroutineMovesTheDeadline(t *testing.T) {
	c, _ := tcpPair(t)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Hour)))
	done := readInBackground(t, c)
	for i := range 2000 {
		c.wake()
		runtime.Gosched()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Hour)))
		select {
		case err := <-done:
			t.Fatalf("after %d wake-ups the read ended with %v, its deadline an hour away", i+1, err)
		default:
		}
		eventually(t, func() bool { return c.reading.Load() || len(done) > 0 }, "the read to go on")
	}
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
