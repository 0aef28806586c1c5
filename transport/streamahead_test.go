package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"regexp"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

// writeAndClose writes data to s and half-closes it in a goroutine, and
// sends the first error.
func writeAndClose(s *transport.Stream, data []byte) <-chan error {
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		if err == nil {
			err = s.CloseWrite()
		}
		wrote <- err
	}()
	return wrote
}

// TestStreamReadAheadInOrderBothWays (from review): both sides write more
// than the window before either reads, so both read-aheads hold bytes;
// then both read with random sizes, and every byte arrives once, in order.
func TestStreamReadAheadInOrderBothWays(t *testing.T) {
	c := newCluster(t, 2, nil)
	data := makePayload(5, 5, 3<<20)
	startReading := make(chan struct{})
	handled := make(chan error, 1)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		wrote := writeAndClose(s, data)
		select {
		case <-startReading:
		case <-ctx.Done():
			handled <- ctx.Err()
			return
		}
		got, err := io.ReadAll(s)
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("the handler read other bytes than were written")
		}
		if werr := <-wrote; err == nil {
			err = werr
		}
		handled <- err
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	wrote := writeAndClose(s, data)
	window := transport.DefaultStreamConfig().StreamBuffer
	waitFor(t, 10*time.Second, "the opener's read-ahead fills", func() bool { return transport.StreamReadAhead(s) == window })
	close(startReading)
	rng := rand.New(rand.NewSource(1))
	var got []byte
	for {
		b := make([]byte, 1+rng.Intn(70000))
		n, err := s.Read(b)
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.True(t, bytes.Equal(got, data), "in order, once: %d of %d", len(got), len(data))
	require.NoError(t, <-wrote)
	require.NoError(t, <-handled)
}

// TestStreamWriteEndsWhenTheSessionBreaks (found in review): a session
// stream's Write waits for the peer's window; the session's connection is
// reset. The read-ahead's Read failed at once with the socket's error, but
// the Write went on waiting until smux's keepalive failed, 10 s later.
func TestStreamWriteEndsWhenTheSessionBreaks(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{Proxied: true})
	accepted := make(chan *transport.Stream, 1)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		accepted <- s
		<-ctx.Done() // reads nothing
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	wrote := writeInBackground(s, 4<<20)
	peerSide := <-accepted
	window := transport.DefaultStreamConfig().StreamBuffer
	waitFor(t, 10*time.Second, "the peer's read-ahead fills: the Write waits for the window", func() bool {
		return transport.StreamReadAhead(peerSide) == window
	})
	require.Positive(t, c.Proxies[1].Kill())
	start := time.Now()
	select {
	case err := <-wrote:
		t.Logf("Write ended after %v: %v", time.Since(start), err)
	case <-time.After(3 * time.Second):
		s.Close()
		<-wrote
		t.Fatalf("the Write still waits %v after its session's connection was reset", time.Since(start))
	}
}

// TestStreamReadOfArrivedBytesWaitsForNoOtherStream (found in review):
// stream B's peer wrote "hello" and reads nothing. When read-aheads took
// their bytes from the peer's inbound account, another stream's
// read-ahead holding it made a Read of B wait for room although "hello"
// had arrived; with the caller reading A only after B, for good. Every
// read-ahead can now always hold aheadBase bytes.
func TestStreamReadOfArrivedBytesWaitsForNoOtherStream(t *testing.T) {
	window := transport.DefaultStreamConfig().StreamBuffer
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 { // the opener: room for one window and a little
			cfg.Memory.MaxMessageSize = 64 << 10
			cfg.Memory.Inbound.PerConnection = 128 << 10
			cfg.Memory.Inbound.PerPeer = int64(window + 16<<10)
		}
	})
	const verbHold transport.Verb = 21
	c.Nodes[1].HandleStream(verbHold, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = s.Write(make([]byte, window)) // fills the opener's read-ahead of A
		<-ctx.Done()
	}))
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = s.Write([]byte("hello"))
		<-ctx.Done() // reads nothing
	}))
	ctx := ctxTimeout(t, 10*time.Second)
	a, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbHold)
	require.NoError(t, err)
	defer a.Close()
	waitFor(t, 10*time.Second, "A's read-ahead fills", func() bool {
		return transport.StreamReadAhead(a) >= window-16<<10
	})
	b, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.SetReadDeadline(time.Now().Add(3*time.Second)))
	got := make([]byte, 5)
	n, err := b.Read(got)
	require.NoError(t, err, "B's peer wrote 5 bytes that arrived; the Read waited for room in the inbound account that A holds")
	require.Equal(t, "hello", string(got[:n]))
}

// TestStreamReadAheadStallsNotThePeersMessages (found in review): bytes
// read ahead were taken from the peer's inbound account, the one its
// messages are read into, and a stream whose caller did not read them
// stopped the peer's requests to this node. They are not now.
func TestStreamReadAheadStallsNotThePeersMessages(t *testing.T) {
	window := transport.DefaultStreamConfig().StreamBuffer
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Memory.MaxMessageSize = 64 << 10
			cfg.Memory.Inbound.PerConnection = 128 << 10
			cfg.Memory.Inbound.PerPeer = int64(window + 16<<10)
		}
	})
	const verbMsg transport.Verb = 22
	c.Nodes[0].Handle(verbMsg, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return []byte("ok"), nil
	}))
	payload := make([]byte, 32<<10)
	_, err := c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbMsg, payload)
	require.NoError(t, err, "before the read-ahead")
	const verbHold transport.Verb = 21
	c.Nodes[1].HandleStream(verbHold, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = s.Write(make([]byte, window))
		<-ctx.Done()
	}))
	a, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbHold)
	require.NoError(t, err)
	defer a.Close()
	waitFor(t, 10*time.Second, "A's read-ahead fills", func() bool {
		return transport.StreamReadAhead(a) >= window-16<<10
	})
	_, err = c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbMsg, payload)
	require.NoError(t, err, "a stream's read-ahead stalls the peer's requests")
}

// TestStreamReadDeadlineLosesNoWindowUpdate (found in review; older than
// the read-ahead): a session stream read with a deadline that had passed
// (a poll for what has arrived) took bytes from smux, whose window update
// for them then raced the passed deadline and was dropped. Once the
// update for the last bytes the peer's window allowed was dropped, the
// peer's Write waited for ever, and so did the reader, after 262 128 of
// 8 MiB here, every time. smux is no longer given a read deadline.
func TestStreamReadDeadlineLosesNoWindowUpdate(t *testing.T) {
	c := newCluster(t, 2, nil)
	data := makePayload(5, 5, 8<<20)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		if _, err := s.Write(data); err == nil {
			_ = s.CloseWrite()
		}
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	var got []byte
	b := make([]byte, 64<<10)
	for {
		// Take what has arrived without waiting...
		require.NoError(t, s.SetReadDeadline(time.Now()))
		n, err := s.Read(b)
		got = append(got, b[:n]...)
		if err == nil {
			continue
		}
		if err == io.EOF {
			break
		}
		require.True(t, isTimeout(err), "%v", err)
		// ...then wait for more, for a while.
		require.NoError(t, s.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err = s.Read(b)
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
		if isTimeout(err) && n == 0 {
			t.Fatalf("the stream stalled after %d of %d bytes: the peer's Write waits for a window update dropped on a passed read deadline", len(got), len(data))
		}
	}
	require.True(t, bytes.Equal(data, got))
}

// TestStreamReadAheadThatEndedKeepsItsGrowthCounted (found in review): a
// read-ahead that read its stream's end — the peer wrote and closed —
// holds the bytes it read until Read takes them, in a buffer grown past
// 32 KiB, and that growth stays counted in the peer's allowance, which
// bounds it (package doc: "per peer at most StreamConfig.SessionBuffer
// more as they grow"). It was returned as the read-ahead ended, so that
// every stream a peer wrote and closed, unread, held up to a window
// outside the allowance, and the peer's other streams grew theirs as if
// those buffers were gone: with both ways' streams, up to about twice
// SessionBuffer.
func TestStreamReadAheadThatEndedKeepsItsGrowthCounted(t *testing.T) {
	c := newCluster(t, 2, nil)
	const size = 200 << 10 // more than 128 KiB: the buffer grows to 256 KiB
	data := makePayload(1, 1, size)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = s.Write(data) // then the transport closes it: the end marker and the close
	}))
	const streams = 3
	var opened []*transport.Stream
	for range streams {
		s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
		require.NoError(t, err)
		defer s.Close()
		opened = append(opened, s)
	}
	chunks := (size + wire.MaxStreamChunk - 1) / wire.MaxStreamChunk
	for _, s := range opened {
		waitFor(t, 10*time.Second, "the read-ahead reads the stream's end", func() bool {
			_, _, ended := transport.StreamReadAheadGrowth(s)
			return ended
		})
		require.Equal(t, size+(chunks+1)*wire.StreamChunkHeaderSize, transport.StreamReadAhead(s), "every byte read ahead, the end marker's too")
	}
	var grown int
	var allowed int64
	for _, s := range opened {
		g, a, _ := transport.StreamReadAheadGrowth(s)
		grown += g
		allowed = a
	}
	require.Positive(t, grown)
	require.GreaterOrEqual(t, allowed, int64(grown), "the ended streams' buffers, grown and full, are counted")

	// Once Read took their bytes, their growth is returned.
	for _, s := range opened {
		got, err := io.ReadAll(s)
		require.NoError(t, err)
		require.True(t, bytes.Equal(got, data))
	}
	_, allowed, _ = transport.StreamReadAheadGrowth(opened[0])
	require.Zero(t, allowed, "emptied, their buffers are let go")
}

// waitingForWindow reports whether a goroutine waits in smux for a
// stream's window: a Write to a peer that reads nothing.
func waitingForWindow() bool {
	buf := make([]byte, 1<<20)
	return windowWait.Match(buf[:runtime.Stack(buf, true)])
}

var windowWait = regexp.MustCompile(`\[select[^\]]*\]:\ngithub\.com/xtaci/smux\.\(\*stream\)\.writeV2\(`)

// TestStreamWriteEndsWithItsSession (found in review): a Write waiting
// for the peer's window, on a stream whose read-ahead is full of the
// peer's unread bytes (it cannot read on to the session's failure),
// waited for smux's keepalive, about 10 s, once the session's connection
// ended: smux ends such a Write for the session's close, not for its
// socket's read error, and nothing closed the session sooner. An accepted
// session was closed only after its handlers returned, so the handler's
// transport's Close waited as long; a dialled one only by the keepalive.
func TestStreamWriteEndsWithItsSession(t *testing.T) {
	for _, tc := range []struct {
		writer, closing int // the node whose Write waits, and the one that closes
	}{{1, 1}, {1, 0}, {0, 1}, {0, 0}} {
		t.Run(fmt.Sprintf("node %d writes, node %d closes", tc.writer, tc.closing), func(t *testing.T) {
			c := newCluster(t, 2, nil)
			window := transport.DefaultStreamConfig().StreamBuffer
			unread := make([]byte, window+64<<10) // more than a read-ahead holds
			wrote, writeEnded := make(chan error, 1), make(chan struct{})
			handled := make(chan *transport.Stream, 1)
			c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
				handled <- s
				if tc.writer == 1 { // the handler's Write: its return would close the stream
					_, err := s.Write(make([]byte, 4<<20))
					wrote <- err
					return
				}
				_, _ = s.Write(unread)
				<-ctx.Done()
				// Not before: its Close would read on, and the opener's
				// Write would go on to fail on the closed connection.
				<-writeEnded
			}))
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
			require.NoError(t, err)
			defer s.Close()
			if tc.writer == 1 {
				_, err = s.Write(unread)
				require.NoError(t, err)
			}
			hs := <-handled
			writerSide, readerSide := s, hs
			if tc.writer == 1 {
				writerSide, readerSide = hs, s
			} else {
				go func() {
					_, err := s.Write(make([]byte, 4<<20))
					wrote <- err
					close(writeEnded)
				}()
			}
			// Both read-aheads full: the writer's cannot read on to the
			// session's end, and the reader's sends no more window.
			waitFor(t, 10*time.Second, "the read-aheads fill", func() bool {
				return transport.StreamReadAhead(writerSide) == window && transport.StreamReadAhead(readerSide) == window
			})
			waitFor(t, 10*time.Second, "the Write waits for the window", waitingForWindow)

			closed := make(chan error, 1)
			go func() { closed <- c.Nodes[tc.closing].Close() }()
			select {
			case err := <-wrote:
				require.Error(t, err)
			case <-time.After(3 * time.Second): // smux's keepalive pings every 10 s
				t.Fatal("the Write waits on after its session's connection ended")
			}
			select {
			case err := <-closed:
				require.NoError(t, err)
			case <-time.After(3 * time.Second):
				t.Fatal("the transport's Close waits for the handler")
			}
		})
	}
}
