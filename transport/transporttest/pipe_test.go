package transporttest

import (
	"context"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

// TestMemConnIsANetConn runs the net.Conn conformance suite of
// golang.org/x/net/nettest (deadlines, concurrent use, close semantics,
// large transfers) over the in-memory connections.
func TestMemConnIsANetConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		n := NewNetwork()
		l, err := n.Host("b").Listen("tcp", "b:0")
		if err != nil {
			return nil, nil, nil, err
		}
		c1, err = n.Host("a").DialContext(t.Context(), "tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		c2, err = l.Accept()
		if err != nil {
			return nil, nil, nil, err
		}
		stop = func() {
			c1.Close()
			c2.Close()
			l.Close()
			n.Close()
		}
		return c1, c2, stop, nil
	})
}

// connPair dials from host a to a listener on host b and returns both ends.
func connPair(t *testing.T, n *Network, a, b string) (client, server net.Conn) {
	t.Helper()
	l, err := n.Host(b).Listen("tcp", b+":0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	client, err = n.Host(a).DialContext(t.Context(), "tcp", l.Addr().String())
	require.NoError(t, err)
	server, err = l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// readWithin reads what arrives on c within d.
func readWithin(c net.Conn, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func TestPartitionHoldsBytesAndTheEndUntilHealed(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client, server := connPair(t, n, "a", "b")
	n.Partition("a", "b")
	_, err := client.Write([]byte("held"))
	require.NoError(t, err, "a write fits the buffer")
	require.NoError(t, client.Close())
	_, err = readWithin(server, 20*time.Millisecond)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "neither the bytes nor the end cross a partition")

	n.Heal("a", "b")
	got, err := readWithin(server, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "held", got)
	_, err = readWithin(server, 5*time.Second)
	assert.Equal(t, io.EOF, err, "then the end")
}

func TestWriterWaitsWhenTheBufferIsFull(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client, _ := connPair(t, n, "a", "b")
	_ = client.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	written, err := client.Write(make([]byte, pipeBuffer+1))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "no reader: the write waits for room")
	assert.Equal(t, pipeBuffer, written, "the buffer took what it could hold")
}

func TestDialWaitsOnAPartitionUntilHealedOrCancelled(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	l, err := n.Host("b").Listen("tcp", "b:0")
	require.NoError(t, err)
	defer l.Close()
	a := n.Host("a")
	n.Partition("a", "b")

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = a.DialContext(ctx, "tcp", l.Addr().String())
	require.ErrorIs(t, err, context.DeadlineExceeded)

	dialed := make(chan error, 1)
	go func() {
		c, err := a.DialContext(t.Context(), "tcp", l.Addr().String())
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	_, err = n.Host("c").DialContext(t.Context(), "tcp", l.Addr().String())
	require.NoError(t, err, "a third host is not partitioned")
	n.Heal("a", "b")
	require.NoError(t, <-dialed, "the heal lets the waiting dial through")
}

func TestBlackholeAcceptsAndNeverAnswers(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	l, err := n.Host("b").Listen("tcp", "b:0")
	require.NoError(t, err)
	defer l.Close()
	n.Blackhole("b")
	client, err := n.Host("a").DialContext(t.Context(), "tcp", l.Addr().String())
	require.NoError(t, err, "the dial succeeds")
	_, err = client.Write([]byte("hello?"))
	require.NoError(t, err)
	_, err = readWithin(client, 20*time.Millisecond)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "nothing answers")
	assert.Len(t, l.(*memListener).backlog, 0, "the listener never sees it")
	require.NoError(t, client.Close())
	n.mu.Lock()
	assert.Empty(t, n.held, "the swallowed end is dropped once the dialer closes")
	n.mu.Unlock()

	n.Unblackhole("b")
	c, s := connPair(t, n, "a", "b")
	_, err = c.Write([]byte("hi"))
	require.NoError(t, err)
	got, err := readWithin(s, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "hi", got)
}

func TestCutResetsBothEnds(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client, server := connPair(t, n, "a", "b")
	connPair(t, n, "a", "c")
	assert.Equal(t, 1, n.Cut("b", "a"))
	_, err := client.Write([]byte("x"))
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	_, err = server.Read(make([]byte, 1))
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.Equal(t, 1, n.Conns("a", "c"), "other hosts' connections stay")
}

func TestDelayHoldsEachWrite(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client, server := connPair(t, n, "a", "b")
	n.Delay("a", "b", 30*time.Millisecond)
	start := time.Now()
	_, err := client.Write([]byte("late"))
	require.NoError(t, err)
	got, err := readWithin(server, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "late", got)
	assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
}

func TestBadAddressesAreRefused(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	h := n.Host("a")
	_, err := h.Listen("tcp", "b:1")
	assert.ErrorIs(t, err, syscall.EADDRNOTAVAIL, "another host's address")
	_, err = h.Listen("tcp", "a")
	assert.Error(t, err, "no port")
	_, err = h.Listen("tcp", "a:x")
	assert.Error(t, err, "a port that is not a number")
	l, err := h.Listen("tcp", "a:7000")
	require.NoError(t, err)
	_, err = h.Listen("tcp", ":7000")
	assert.ErrorIs(t, err, syscall.EADDRINUSE)
	require.NoError(t, l.Close())
	assert.ErrorIs(t, l.Close(), net.ErrClosed, "closed twice")
	_, err = h.DialContext(t.Context(), "tcp", "a:7000")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "nothing listens there now")
	_, err = h.DialContext(t.Context(), "tcp", "nowhere")
	assert.Error(t, err)
	n.Close()
	_, err = h.Listen("tcp", "a:0")
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = h.DialContext(t.Context(), "tcp", "a:7000")
	assert.ErrorIs(t, err, net.ErrClosed)
}

// TestWriteThatFitsSucceedsWhateverTheReaderDoesNext: a write whose bytes
// all fit the buffer succeeds, even if the reader closes right after
// taking them, as a write into a socket buffer does.
func TestWriteThatFitsSucceedsWhateverTheReaderDoesNext(t *testing.T) {
	for range 200 {
		n := NewNetwork()
		client, server := connPair(t, n, "a", "b")
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 4)
			_, _ = io.ReadFull(server, buf)
			server.Close()
		}()
		_, err := client.Write([]byte("hello, then refused"))
		require.NoError(t, err)
		<-done
		n.Close()
	}
}

// dialIntoBlackhole returns a network whose host b is blackholed and a
// connection from a to b that the blackhole swallowed.
func dialIntoBlackhole(t *testing.T) (*Network, net.Conn) {
	n := NewNetwork()
	t.Cleanup(func() { n.Close() })
	l, err := n.Host("b").Listen("tcp", "b:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	n.Blackhole("b")
	client, err := n.Host("a").DialContext(t.Context(), "tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	return n, client
}

// A connection swallowed by a blackhole is open for its dialer: Conns
// counts it, and Cut resets it and says so.
func TestCutAndConnsCountBlackholedConnections(t *testing.T) {
	n, client := dialIntoBlackhole(t)
	assert.Equal(t, 1, n.Conns("a", "b"), "the dialer's connection is open")
	assert.Equal(t, 1, n.Cut("a", "b"), "Cut reports the connection it reset")
	_, err := client.Write([]byte("x"))
	assert.ErrorIs(t, err, syscall.ECONNRESET)
}

// HealAll lifts a blackhole as Unblackhole does: the connections it
// swallowed are reset, not left silent for ever.
func TestHealAllResetsBlackholedConnections(t *testing.T) {
	n, client := dialIntoBlackhole(t)
	n.HealAll()
	_, err := readWithin(client, 5*time.Second)
	assert.ErrorIs(t, err, syscall.ECONNRESET, "the swallowed connection is reset")
	n.mu.Lock()
	assert.Empty(t, n.held, "and no longer held")
	n.mu.Unlock()
}
