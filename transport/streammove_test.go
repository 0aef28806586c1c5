package transport

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// gatedDialer holds the next dial once armed: entered is closed when it
// starts, and it goes on when release is closed (armed by armToFail, it
// then fails).
type gatedDialer struct {
	mu      sync.Mutex
	armed   bool
	fail    error
	entered chan struct{}
	release chan struct{}
}

func (d *gatedDialer) arm() { d.armToFail(nil) }

// armToFail holds the next dial, as arm does, and then fails it with err
// (nil: it dials).
func (d *gatedDialer) armToFail(err error) {
	d.mu.Lock()
	d.armed, d.fail = true, err
	d.entered, d.release = make(chan struct{}), make(chan struct{})
	d.mu.Unlock()
}

func (d *gatedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	armed := d.armed
	d.armed = false
	entered, release, fail := d.entered, d.release, d.fail
	d.mu.Unlock()
	if armed {
		close(entered)
		<-release
		if fail != nil {
			return nil, fail
		}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// TestAStreamSessionDialledWhileThePeerMovedIsNotKept: n2 moves while this
// node dials its stream session to n2's old address. The move found no
// session to close, and the session the dial then made to the old address
// was kept: every later stream to n2 went to whatever answered there,
// until that connection died. It is now dropped, and streams opened after
// the move go to n2's new address.
func TestAStreamSessionDialledWhileThePeerMovedIsNotKept(t *testing.T) {
	const verb Verb = 1
	serve := func(name string) *Transport {
		n := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), func(c *Config) {
			c.Security.AcceptUnknownPeers = true
		})
		n.HandleStream(verb, StreamHandlerFunc(func(ctx context.Context, s *Stream) {
			_, _ = s.Write([]byte(name))
			_ = s.CloseWrite()
		}))
		return n
	}
	oldN2, newN2 := serve("old"), serve("new")
	static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: oldN2.Addr().String()})
	dialer := &gatedDialer{}
	n1 := startNode(t, "n1", static, func(c *Config) { c.Dialer = dialer })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	from := func(s *Stream) string {
		defer s.Close()
		got, err := io.ReadAll(s)
		require.NoError(t, err)
		return string(got)
	}

	dialer.arm()
	first := make(chan struct{})
	go func() {
		defer close(first)
		if s, err := n1.OpenStream(ctx, "n2", verb); err == nil {
			s.Close()
		}
	}()
	select {
	case <-dialer.entered: // the stream session's dial, to the old address
	case <-ctx.Done():
		t.Fatal("the stream session was not dialled")
	}
	static.Add(cluster.Member{ID: "n2", Addr: newN2.Addr().String()}) // n2 moves
	close(dialer.release)
	select {
	case <-first:
	case <-ctx.Done():
		t.Fatal("the first OpenStream did not return")
	}

	s, err := n1.OpenStream(ctx, "n2", verb)
	require.NoError(t, err)
	assert.Equal(t, "new", from(s), "a stream opened after the move went to n2's old address")
}

// TestAStreamWhoseSessionMovedAwayReadsCutShort: n2 moves while a stream
// to it is open, its read-ahead's buffer holding some bytes or full. The
// move closes the session, and Read, after the bytes read ahead, returned
// io.ErrClosedPipe, the error of a stream its caller closed, where Read
// promises io.ErrUnexpectedEOF for a stream cut short.
func TestAStreamWhoseSessionMovedAwayReadsCutShort(t *testing.T) {
	const verb Verb = 1
	const window = 32 << 10 // the read-ahead's first size: it cannot grow
	for _, size := range []int{2, 2 * window} {
		n2 := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), func(c *Config) {
			c.Security.AcceptUnknownPeers = true
			c.Streams.StreamBuffer = window
		})
		n2.HandleStream(verb, StreamHandlerFunc(func(ctx context.Context, s *Stream) {
			_, _ = s.Write(make([]byte, size))
			<-ctx.Done()
		}))
		static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
		n1 := startNode(t, "n1", static, func(c *Config) { c.Streams.StreamBuffer = window })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := n1.OpenStream(ctx, "n2", verb)
		require.NoError(t, err)
		defer s.Close()
		require.Eventually(t, func() bool { return StreamReadAhead(s) >= min(size, window) },
			5*time.Second, time.Millisecond, "the read-ahead takes the bytes")
		static.Add(cluster.Member{ID: "n2", Addr: "127.0.0.1:2"}) // n2 moves
		_, err = io.ReadAll(s)
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "%d bytes sent: the stream was cut short, not closed by its caller", size)
	}
}

// TestAStreamWhoseSessionMovedAwayWritesCutShort: n2 moves while n1
// writes to a stream to it whose handler does not read, a Write waiting
// for the handler's window, or none under way. The move closes the
// session, and the Write waiting, and every later one, failed with
// io.ErrClosedPipe, the error of a stream its caller closed — as Read did
// before it returned errSessionEnded for a session that closed under it.
func TestAStreamWhoseSessionMovedAwayWritesCutShort(t *testing.T) {
	const verb Verb = 1
	const window = 32 << 10 // the read-ahead's first size: it cannot grow
	for _, waiting := range []bool{false, true} {
		n2 := startNode(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), func(c *Config) {
			c.Security.AcceptUnknownPeers = true
			c.Streams.StreamBuffer = window
		})
		served := make(chan *Stream, 1)
		n2.HandleStream(verb, StreamHandlerFunc(func(ctx context.Context, s *Stream) {
			served <- s
			<-ctx.Done()
		}))
		static := cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()})
		n1 := startNode(t, "n1", static, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := n1.OpenStream(ctx, "n2", verb)
		require.NoError(t, err)
		defer s.Close()
		wrote := make(chan error, 1)
		if waiting {
			go func() {
				_, err := s.Write(make([]byte, 8<<20)) // past the handler's window
				wrote <- err
			}()
			handled := <-served
			require.Eventually(t, func() bool { return StreamReadAhead(handled) == window }, 5*time.Second, time.Millisecond,
				"the handler's read-ahead fills, and the Write waits")
		}
		static.Add(cluster.Member{ID: "n2", Addr: "127.0.0.1:2"}) // n2 moves
		if waiting {
			select {
			case err = <-wrote:
			case <-ctx.Done():
				t.Fatal("the Write waiting went on waiting")
			}
			assert.NotErrorIs(t, err, io.ErrClosedPipe, "the Write waiting: the stream was cut short, not closed by its caller")
			assert.ErrorIs(t, err, errSessionEnded, "the Write waiting")
		}
		require.Eventually(t, func() bool {
			_, err = s.Write([]byte("x"))
			return err != nil
		}, 5*time.Second, time.Millisecond)
		assert.NotErrorIs(t, err, io.ErrClosedPipe, "waiting %v: a later Write: the stream was cut short, not closed by its caller", waiting)
		assert.ErrorIs(t, err, errSessionEnded, "waiting %v: a later Write", waiting)
	}
}
