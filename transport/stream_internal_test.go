package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xtaci/smux"

	"github.com/internode/internode/wire"
)

// TestStreamReadDeadlineInsideAChunkHeader (found in review): a Read
// whose deadline passed with half a chunk header read dropped that half,
// and the next Read parsed a header from the wrong bytes (a chunk of
// 354 405 bytes, over the limit). The half is kept.
func TestStreamReadDeadlineInsideAChunkHeader(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := &Stream{t: &Transport{closed: make(chan struct{})}, s: a, closed: make(chan struct{}), release: func() {}}
	go func() { _, _ = b.Write([]byte{0, 0}) }() // half a header
	require.NoError(t, s.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	_, err := s.Read(make([]byte, 16))
	require.Error(t, err, "the deadline passes")
	require.NoError(t, s.SetReadDeadline(time.Time{}))
	go func() { _, _ = b.Write([]byte{0, 5, 'h', 'e', 'l', 'l', 'o'}) }() // its rest, and the chunk
	buf := make([]byte, 16)
	n, err := s.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
}

// TestReadAheadBufferFollowsItsBytes: the read-ahead's buffer grows by
// doubling while it is full, up to the window and within the peer's
// allowance, and an emptied one that grew is let go, giving its part of
// the allowance back.
func TestReadAheadBufferFollowsItsBytes(t *testing.T) {
	const window = 256 << 10
	var allowance aheadAllowance
	ra := &readAhead{buf: make([]byte, aheadBase), allowance: &allowance, limit: 1 << 20, window: window}
	ra.end = aheadBase // full
	ra.arrange()
	require.Len(t, ra.buf, 2*aheadBase, "a full buffer doubles")
	require.EqualValues(t, aheadBase, allowance.used.Load(), "taking the growth from the allowance")
	ra.start, ra.end = 10, 2*aheadBase-5
	ra.arrange()
	require.Equal(t, 0, ra.start, "what is left moves to the front")
	require.Equal(t, 2*aheadBase-15, ra.end)
	require.Len(t, ra.buf, 2*aheadBase, "and the buffer keeps its size")
	for ra.end = len(ra.buf); len(ra.buf) < window; ra.end = len(ra.buf) {
		ra.arrange()
	}
	ra.arrange()
	require.Len(t, ra.buf, window, "never past the window")
	require.EqualValues(t, window-aheadBase, allowance.used.Load())
	ra.start = ra.end
	ra.arrange()
	require.Len(t, ra.buf, aheadBase, "an emptied buffer is let go")
	require.Zero(t, ra.start+ra.end)
	require.Zero(t, allowance.used.Load(), "and its growth given back")

	ra.limit = aheadBase / 2 // an allowance others hold
	ra.end = aheadBase
	ra.arrange()
	require.Len(t, ra.buf, aheadBase, "no growth past the allowance")
	require.Zero(t, allowance.used.Load())
}

// gatedConn passes writes until shut, then holds each but frame headers
// alone (a SYN) until opened again: a session's socket that stopped taking
// data.
type gatedConn struct {
	net.Conn
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	blocked chan struct{} // gets a value when a write is held
}

func (g *gatedConn) shut() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedConn) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gatedConn) Write(b []byte) (int, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil && len(b) > smuxFrameHeader {
		select {
		case g.blocked <- struct{}{}:
		default:
		}
		<-gate
	}
	return g.Conn.Write(b)
}

// smuxFrameHeader is the size of an smux frame's header: a SYN is one.
const smuxFrameHeader = 8

// TestGreetEndsWithItsCancelledContextBehindASession (found in review):
// OpenStream ends when its context does. In a session whose socket stopped
// taking data after the new stream's SYN went out, the greeting's Write
// (the verb) waits in smux's writeFrameInternal on a timer made from the
// deadline when it began: a past deadline set then does not wake it (smux
// wakes only a Write waiting for window), nor does a close, and the open
// returned only at the handshake deadline. The open now runs in a
// goroutine of its own, waited for beside the context.
func TestGreetEndsWithItsCancelledContextBehindASession(t *testing.T) {
	a, b := net.Pipe()
	g := &gatedConn{Conn: a, blocked: make(chan struct{}, 1)}
	cfg := StreamConfig{SessionBuffer: 1 << 20, StreamBuffer: 256 << 10}
	client, err := smux.Client(g, cfg.smux(DefaultKeepaliveTimeout))
	require.NoError(t, err)
	server, err := smux.Server(b, cfg.smux(DefaultKeepaliveTimeout))
	require.NoError(t, err)
	defer server.Close()
	defer client.Close()
	defer g.open()
	go func() { // accept, and never answer
		for {
			if _, err := server.AcceptStream(); err != nil {
				return
			}
		}
	}()
	g.shut() // the SYN goes out, the verb does not

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const handshake = 2 * time.Second // the unanswered greeting's bound
	var out atomic.Int32
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		st, err := openSessionStream(ctx, out.Add, client, 1, time.Now().Add(handshake))
		if st != nil {
			st.Close()
		}
		done <- err
	}()
	select {
	case <-g.blocked: // the verb waits for the socket
	case <-time.After(handshake):
		t.Fatal("the greeting's Write never reached the socket")
	}
	cancel()
	cancelled := time.Now()
	select {
	case err := <-done:
		t.Logf("the open returned %v after %v (%v after its cancel)", err, time.Since(start), time.Since(cancelled))
		assert.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(cancelled), time.Second, "the open outlived its cancelled context")
		assert.EqualValues(t, 1, out.Load(), "the stream counts while its close waits")
	case <-time.After(2 * handshake):
		t.Fatal("the open never returned")
	}
	g.open()
	require.Eventually(t, func() bool { return out.Load() == 0 }, 10*time.Second, time.Millisecond,
		"the close went out and let go of its place")
}

// afterDataConn passes writes until one carrying data (the verb) went
// out, then holds every later FIN (the refused stream's) until released:
// a session whose socket filled up just after the greeting.
type afterDataConn struct {
	net.Conn
	mu      sync.Mutex
	armed   bool
	gate    chan struct{}
	blocked chan struct{}
}

func (c *afterDataConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	hold := c.armed && len(b) >= smuxFrameHeader && b[1] == 1 // cmdFIN
	if len(b) > smuxFrameHeader {
		c.armed = true
	}
	c.mu.Unlock()
	if hold {
		select {
		case c.blocked <- struct{}{}:
		default:
		}
		<-c.gate
	}
	return c.Conn.Write(b)
}

// TestRefusedOpenEndsWithItsContext (found in review): openSessionStream
// opens "by deadline, or until ctx ends". A refused stream's close waited
// up to lingerTimeout (dropStream) without watching ctx: with the
// session's socket congested right after the refusal, the open outlived
// its cancelled context by a second.
func TestRefusedOpenEndsWithItsContext(t *testing.T) {
	a, b := net.Pipe()
	g := &afterDataConn{Conn: a, gate: make(chan struct{}), blocked: make(chan struct{}, 1)}
	cfg := StreamConfig{SessionBuffer: 1 << 20, StreamBuffer: 256 << 10}
	client, err := smux.Client(g, cfg.smux(DefaultKeepaliveTimeout))
	require.NoError(t, err)
	server, err := smux.Server(b, cfg.smux(DefaultKeepaliveTimeout))
	require.NoError(t, err)
	var release sync.Once
	open := func() { release.Do(func() { close(g.gate) }) }
	defer server.Close()
	defer client.Close()
	defer open()
	go func() { // refuse every stream
		for {
			st, err := server.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 16)
				_, _ = st.Read(buf)
				_, _ = st.Write(wire.AppendStreamRefuse(nil, wire.FailureUnknownVerb))
				st.Close()
			}()
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out atomic.Int32
	done := make(chan error, 1)
	go func() {
		st, err := openSessionStream(ctx, out.Add, client, 1, time.Now().Add(5*time.Second))
		if st != nil {
			st.Close()
		}
		done <- err
	}()
	select {
	case <-g.blocked: // the refused stream's FIN waits for the socket
	case <-time.After(5 * time.Second):
		t.Fatal("the FIN was never held")
	}
	cancel()
	cancelled := time.Now()
	select {
	case err := <-done:
		took := time.Since(cancelled)
		t.Logf("the open returned %v, %v after its cancel", err, took)
		var re *RemoteError
		assert.True(t, errors.As(err, &re) || errors.Is(err, context.Canceled), "%v", err)
		assert.Less(t, took, 300*time.Millisecond, "the open outlived its cancelled context")
	case <-time.After(5 * time.Second):
		t.Fatal("the open never returned")
	}
	open()
	require.Eventually(t, func() bool { return out.Load() == 0 }, 5*time.Second, time.Millisecond)
}
