package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestOwnConnectionStreamsBothWays(t *testing.T) {
	c := newCluster(t, 2, nil)
	echoStreams(c)
	var wg sync.WaitGroup
	for i := range 6 { // three each way, within MaxConnsPerPeer (4)
		from, to := i%2, 1-i%2
		wg.Go(func() {
			s, err := c.Nodes[from].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(to), verbRepair, transport.OwnConnection())
			if !assert.NoError(t, err) {
				return
			}
			defer s.Close()
			assert.Equal(t, c.ID(to), s.Peer())
			want := makePayload(uint32(from), uint64(i), 300<<10) // chunks of 64 KiB, vectored
			go func() {
				_, _ = s.Write(want[:100]) // a small chunk, copied behind its header
				_, _ = s.Write(want[100:])
				_ = s.CloseWrite()
			}()
			got, err := io.ReadAll(s)
			assert.NoError(t, err)
			assert.Equal(t, len(want), len(got))
			assert.True(t, bytes.Equal(want, got), "echoed bytes differ")
		})
	}
	wg.Wait()
	// Every stream connection's read buffer went back to the peer's
	// inbound account once it closed.
	for _, n := range c.Nodes {
		assert.Eventually(t, func() bool { return n.Stats().InboundHeld == 0 }, 5*time.Second, time.Millisecond,
			"%s still holds inbound bytes", n.NodeID())
	}
}

func TestOwnConnectionUnknownVerb(t *testing.T) {
	c := newCluster(t, 2, nil)
	_, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), 999, transport.OwnConnection())
	assert.ErrorIs(t, err, transport.ErrUnknownVerb)
	assert.Contains(t, err.Error(), "(stream connection)", "the error names the connection kind")
}

func TestOwnConnectionCountsAgainstMaxPerPeer(t *testing.T) {
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) { cfg.Streams.MaxPerPeer = 1 })
	echoStreams(c)
	ctx := ctxTimeout(t, 5*time.Second)
	s, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair, transport.OwnConnection())
	require.NoError(t, err)
	_, err = c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	assert.ErrorIs(t, err, transport.ErrOverloaded, "a stream on its own connection is one of the peer's streams")
	require.NoError(t, s.Close())
	// Closing the stream gives its place back here at once, and at the
	// peer once its handler has returned.
	assert.Eventually(t, func() bool {
		s, err = c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair, transport.OwnConnection())
		if err != nil {
			require.ErrorIs(t, err, transport.ErrOverloaded)
			return false
		}
		return true
	}, 5*time.Second, time.Millisecond, "closing the stream gave its place back")
	if s != nil {
		require.NoError(t, s.Close())
	}
}

// An acceptor that answers before it has read all the opener sent, and
// returns, must not lose its answer: closing a socket with unread bytes
// resets the connection, and the reset discards the part of the answer
// still in the acceptor's socket buffer. Its stream closes with a
// half-close and waits for the opener's end instead.
func TestOwnConnectionAnswerBeforeReadingAll(t *testing.T) {
	c := newCluster(t, 2, nil)
	answer := bytes.Repeat([]byte("answer"), 1<<19)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		head := make([]byte, 16)
		if _, err := io.ReadFull(s, head); err != nil {
			return
		}
		_, _ = s.Write(answer) // more than the socket buffers hold
		_ = s.CloseWrite()
		// Returns with most of the opener's bytes unread.
	}))
	for i := range 3 {
		s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, transport.OwnConnection())
		require.NoError(t, err)
		written := make(chan struct{})
		go func() {
			defer close(written)
			_, _ = s.Write(make([]byte, 256<<10))
		}()
		got, err := io.ReadAll(s)
		require.NoError(t, err, "attempt %d", i)
		require.Equal(t, len(answer), len(got), "attempt %d", i)
		require.NoError(t, s.Close())
		<-written
	}
}

// A stream on its own connection ends when either transport closes: the
// other side's Read fails rather than waiting.
func TestOwnConnectionEndsWithTransport(t *testing.T) {
	c := newCluster(t, 3, nil)
	hold := newGate()
	defer hold.open()
	for _, n := range c.Nodes {
		n.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
			_ = hold.wait(ctx) // never writes
		}))
	}
	toClosing, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, transport.OwnConnection())
	require.NoError(t, err)
	defer toClosing.Close()
	fromClosing, err := c.Nodes[1].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(2), verbRepair, transport.OwnConnection())
	require.NoError(t, err)
	defer fromClosing.Close()

	require.NoError(t, c.Nodes[1].Close())
	_ = toClosing.SetReadDeadline(time.Now().Add(promptly(time.Second)))
	_, err = toClosing.Read(make([]byte, 1))
	require.Error(t, err)
	assert.False(t, isTimeout(err), "the acceptor's close ended the stream: %v", err)
	_ = fromClosing.SetReadDeadline(time.Now().Add(promptly(time.Second)))
	_, err = fromClosing.Read(make([]byte, 1))
	require.Error(t, err)
	assert.False(t, isTimeout(err), "the opener's close ended the stream: %v", err)
}

// A stream on its own connection whose connection fails under it — the
// peer's socket closed with bytes unread, so it resets — was cut short:
// Read says so with io.ErrUnexpectedEOF, as Stream.Read documents and as
// a session stream's Read does, and as the socket's error (ECONNRESET)
// too.
func TestOwnConnectionResetIsCutShort(t *testing.T) {
	c := newCluster(t, 2, nil)
	hold := newGate()
	defer hold.open()
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_ = hold.wait(ctx) // never reads
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, transport.OwnConnection())
	require.NoError(t, err)
	defer s.Close()
	// Left unread in the peer's socket: on loopback they are there once
	// Write returns.
	_, err = s.Write(make([]byte, 16<<10))
	require.NoError(t, err)
	require.NoError(t, c.Nodes[1].Close())
	_ = s.SetReadDeadline(time.Now().Add(promptly(2 * time.Second)))
	_, err = s.Read(make([]byte, 1))
	require.Error(t, err)
	require.ErrorIs(t, err, syscall.ECONNRESET, "the peer's socket closed with bytes unread")
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the stream was cut short")
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// Close unblocks a Write that waits for a peer that does not read, on
// either kind of stream, rather than waiting for it to finish first: a
// caller's watchdog closes a stuck stream that way.
func TestStreamCloseUnblocksWrite(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []transport.StreamOption
	}{{"session", nil}, {"own connection", []transport.StreamOption{transport.OwnConnection()}}} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			started := stopReadingAfterOneByte(t, c.Nodes[1])
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, tt.opts...)
			require.NoError(t, err)
			written := make(chan error, 1)
			go func() {
				_, err := s.Write(make([]byte, 32<<20)) // more than windows and socket buffers hold
				written <- err
			}()
			<-started
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case <-closed:
			case <-time.After(promptly(time.Second)):
				t.Fatal("Close waits for the blocked Write")
			}
			select {
			case err := <-written:
				assert.Error(t, err, "the blocked Write fails")
			case <-time.After(promptly(time.Second)):
				t.Fatal("the Write is still blocked after Close")
			}
		})
	}
}

// TestOwnConnectionCloseOverTLSReturnsWithinASecond: Close "returns
// within about a second". On a stream with a connection of its own over
// TLS whose peer stopped reading (its socket full), ownConn.Close's
// CloseWrite, tls.Conn's, wrote a close_notify alert with a write
// deadline of 5 s of its own, and Close took 5 s (found in review). The
// half-close now happens in Close's lingering goroutine.
func TestOwnConnectionCloseOverTLSReturnsWithinASecond(t *testing.T) {
	ca, err := transporttest.NewCA("test")
	require.NoError(t, err)
	c := transporttest.New(t, 2, transporttest.Options{CA: ca})
	started := stopReadingAfterOneByte(t, c.Nodes[1])
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, transport.OwnConnection())
	require.NoError(t, err)
	_, err = s.Write([]byte{1})
	require.NoError(t, err)
	<-started
	for attempt := 0; ; attempt++ { // fill the sockets
		require.Less(t, attempt, 200, "the socket never filled")
		require.NoError(t, s.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
		if _, err := s.Write(make([]byte, 1<<20)); err != nil {
			break
		}
	}
	start := time.Now()
	err = s.Close()
	took := time.Since(start)
	t.Logf("Close took %v: %v", took, err)
	assert.Less(t, took, 2*time.Second, "Close outlived its second")
}

// stopReadingAfterOneByte has n's handler for verbRepair read a stream's
// first byte, say so on the channel returned, and read nothing more until
// the test ends: a peer that stopped reading.
func stopReadingAfterOneByte(t *testing.T, n *transport.Transport) <-chan struct{} {
	started := make(chan struct{})
	hold := newGate()
	t.Cleanup(hold.open)
	n.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.ReadFull(s, make([]byte, 1))
		close(started)
		_ = hold.wait(ctx)
	}))
	return started
}

// TestOwnConnectionAnswerDuringShutdownIsWhole: n2 is shutting down,
// waiting for a request it is handling, when a stream handler of its, on
// a connection of its own, writes its answer and returns, the opener's
// last bytes unread. Its close, the transport closing, skipped the
// lingering end (ownConn.Close) and closed the socket at once, with bytes
// unread in it: the kernel reset the connection and threw away the end
// of the answer still in the socket, which the opener read cut short.
// Shutdown is graceful: until it closes the transport, a stream's end
// lingers as it does otherwise.
func TestOwnConnectionAnswerDuringShutdownIsWhole(t *testing.T) {
	const verbHold transport.Verb = 218
	const answer = 1 << 20
	c := newCluster(t, 2, nil)
	holding := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	c.Nodes[1].Handle(verbHold, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
		holding <- struct{}{}
		<-release
		return nil, nil
	}))
	asked := make(chan struct{})
	answered := make(chan struct{})
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		if _, err := io.ReadFull(s, make([]byte, 5)); err != nil {
			return
		}
		close(asked)
		<-answered // the opener's next bytes are in the socket, unread
		_, _ = s.Write(bytes.Repeat([]byte("a"), answer))
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, transport.OwnConnection())
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Write([]byte("hello"))
	require.NoError(t, err)
	within(t, asked, 5*time.Second, "the handler's read")
	_, err = s.Write([]byte("more, never read"))
	require.NoError(t, err)

	requested := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbHold, nil)
		requested <- err
	}()
	within(t, holding, 5*time.Second, "the held request's handler")
	shut := make(chan error, 1)
	go func() { shut <- c.Nodes[1].Shutdown(ctxTimeout(t, 30*time.Second)) }()
	waitFor(t, 5*time.Second, "n2 shutting down", func() bool { return shuttingDown(c.Nodes[1]) })
	close(answered)

	got, err := io.ReadAll(s)
	assert.NoError(t, err, "the answer, written in full during Shutdown, read cut short")
	assert.Equal(t, answer, len(got))
	releaseAll()
	require.NoError(t, within(t, requested, 10*time.Second, "the held request"))
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))
}
