package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

const verbRepair transport.Verb = 20

func echoStreams(c *transporttest.Cluster) {
	for _, n := range c.Nodes {
		n.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
			_, _ = io.Copy(s, s) // echo until the opener half-closes
			_ = s.CloseWrite()
		}))
	}
}

func TestStreamsBothWays(t *testing.T) {
	c := newCluster(t, 2, nil)
	echoStreams(c)
	var wg sync.WaitGroup
	for i := range 8 { // concurrent streams share one session per direction
		from, to := i%2, 1-i%2
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.Nodes[from].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(to), verbRepair)
			if !assert.NoError(t, err) {
				return
			}
			defer s.Close()
			assert.Equal(t, c.ID(to), s.Peer())
			want := makePayload(uint32(from), uint64(i), 300<<10) // larger than a stream's window
			go func() {
				_, _ = s.Write(want)
				_ = s.CloseWrite()
			}()
			got, err := io.ReadAll(s)
			assert.NoError(t, err)
			assert.Equal(t, len(want), len(got))
			assert.True(t, bytes.Equal(want, got), "echoed bytes differ")
		}()
	}
	wg.Wait()
}

func TestStreamUnknownVerb(t *testing.T) {
	c := newCluster(t, 2, nil)
	_, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), 999)
	assert.ErrorIs(t, err, transport.ErrUnknownVerb)
	assert.Contains(t, err.Error(), "(stream session)", "the error names the connection kind")
}

func TestStreamDeadlines(t *testing.T) {
	c := newCluster(t, 2, nil)
	hold := newGate()
	defer hold.open()
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_ = hold.wait(ctx) // never writes
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = s.Read(make([]byte, 1))
	require.Error(t, err)
	var timeout interface{ Timeout() bool }
	require.ErrorAs(t, err, &timeout)
	assert.True(t, timeout.Timeout())
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice")
}

func TestStreamLimitPerPeer(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Streams.MaxPerPeer = 2 })
	ended := make(chan struct{}, 10)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.Copy(io.Discard, s) // until the opener closes
		ended <- struct{}{}
	}))
	ctx := ctxTimeout(t, 5*time.Second)
	a, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	require.NoError(t, err)
	b, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	require.NoError(t, err)
	_, err = c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	assert.ErrorIs(t, err, transport.ErrOverloaded, "the opener's own limit")
	require.NoError(t, a.Close())
	<-ended // the handler is returning: its place on the receiver frees as it does
	var d *transport.Stream
	waitFor(t, 5*time.Second, "closing a stream frees its place", func() bool {
		d, err = c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
		return err == nil
	})
	d.Close()
	b.Close()
}

func TestStreamLimitOnReceiver(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Streams.MaxPerPeer = 1
	})
	hold := newGate()
	defer hold.open()
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_ = hold.wait(ctx)
	}))
	ctx := ctxTimeout(t, 5*time.Second)
	a, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	require.NoError(t, err)
	a.Close() // the opener's place is free, the receiver's handler still runs
	_, err = c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	require.ErrorIs(t, err, transport.ErrOverloaded, "refused by the receiver")
	var remote *transport.RemoteError
	assert.ErrorAs(t, err, &remote)
}

func TestStreamCancelledOpen(t *testing.T) {
	c := newCluster(t, 2, nil)
	echoStreams(c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbRepair)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestStreamsEndWhenTransportCloses(t *testing.T) {
	c := newCluster(t, 2, nil)
	echoStreams(c)
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	require.NoError(t, c.Nodes[1].Close())
	_, err = s.Read(make([]byte, 1))
	assert.Error(t, err, "the peer's close ends the stream")
	s.Close()
}

// echoStreamsOn registers the stream echo handler of echoStreams on n.
func echoStreamsOn(n *transport.Transport) {
	n.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.Copy(s, s)
		_ = s.CloseWrite()
	}))
}

// streamEcho opens a stream from n to peer within ctx and checks that it
// echoes.
func streamEcho(ctx context.Context, n *transport.Transport, peer cluster.NodeID) error {
	s, err := n.OpenStream(ctx, peer, verbRepair)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.Write([]byte("ping")); err != nil {
		return err
	}
	if err := s.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(s)
	if err != nil {
		return err
	}
	if string(got) != "ping" {
		return errors.New("stream echoed " + string(got))
	}
	return nil
}

// A peer that restarts on the same address takes streams again at once:
// the first OpenStream after its restart works, on a new session, rather
// than failing on the dead one.
func TestStreamToRestartedPeer(t *testing.T) {
	c := newCluster(t, 2, nil)
	echoStreams(c)
	require.NoError(t, streamEcho(ctxTimeout(t, 5*time.Second), c.Nodes[0], c.ID(1)))
	var slowest time.Duration
	for range 3 {
		n2, err := c.Restart(1)
		require.NoError(t, err)
		echoStreamsOn(n2)
		back := time.Now()
		ctx := ctxTimeout(t, promptly(time.Second))
		require.NoError(t, streamEcho(ctx, c.Nodes[0], c.ID(1)), "first stream after the restart")
		slowest = max(slowest, time.Since(back))
	}
	t.Logf("first stream echoed at most %v after the peer was back", slowest)
}

// streamKinds are the two ways a stream travels: in the peer's session,
// or on a connection of its own.
var streamKinds = []struct {
	name string
	opts []transport.StreamOption
}{{"session", nil}, {"own connection", []transport.StreamOption{transport.OwnConnection()}}}

// TestStreamWriteGoesOnAfterItsDeadline: a Write whose deadline passes
// part-way through a chunk returns how much it wrote, and a later Write
// goes on from there; the peer reads every byte once, in order. The
// unfinished chunk's rest was forgotten, and the next Write began a new
// chunk header inside it: the peer misread the stream (a chunk of 1.4 GB).
func TestStreamWriteGoesOnAfterItsDeadline(t *testing.T) {
	for _, kind := range streamKinds {
		t.Run(kind.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			startReading := make(chan struct{})
			type result struct {
				data []byte
				err  error
			}
			got := make(chan result, 1)
			c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
				select {
				case <-startReading:
				case <-ctx.Done():
					return
				}
				b, err := io.ReadAll(s)
				got <- result{b, err}
			}))
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, kind.opts...)
			require.NoError(t, err)
			defer s.Close()
			data := make([]byte, 16<<20)
			for i := range data {
				data[i] = byte(i * 7)
			}
			require.NoError(t, s.SetWriteDeadline(time.Now().Add(300*time.Millisecond)))
			n, err := s.Write(data)
			require.Error(t, err, "the peer does not read yet: the Write times out")
			require.Less(t, n, len(data))
			require.NoError(t, s.SetWriteDeadline(time.Time{}))
			close(startReading)
			wrote := make(chan error, 1)
			go func() {
				_, err := s.Write(data[n:])
				if err == nil {
					err = s.CloseWrite()
				}
				wrote <- err
			}()
			r := <-got
			require.NoError(t, r.err)
			require.NoError(t, <-wrote)
			assert.Equal(t, len(data), len(r.data), "every byte, once")
			assert.True(t, bytes.Equal(data, r.data), "in order")
		})
	}
}

// TestStreamCloseDoesNotWaitForAPeerThatDoesNotRead: Close writes the end
// marker itself when no Write is under way, and did so without a
// deadline: with the peer not reading and its window full, Close hung.
func TestStreamCloseDoesNotWaitForAPeerThatDoesNotRead(t *testing.T) {
	for _, kind := range streamKinds {
		t.Run(kind.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			started, release := make(chan struct{}), make(chan struct{})
			c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
				_, _ = io.ReadFull(s, make([]byte, 1))
				close(started)
				select { // reads nothing more
				case <-release:
				case <-ctx.Done():
				}
			}))
			defer close(release)
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, kind.opts...)
			require.NoError(t, err)
			_, err = s.Write([]byte{1})
			require.NoError(t, err)
			<-started
			// Fill the window: write until a Write times out.
			require.NoError(t, s.SetWriteDeadline(time.Now().Add(300*time.Millisecond)))
			_, err = s.Write(make([]byte, 64<<20))
			require.Error(t, err, "the window fills")
			require.NoError(t, s.SetWriteDeadline(time.Time{}))
			closed := make(chan error, 1)
			go func() { closed <- s.Close() }()
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Fatal("Stream.Close waits to write its end marker to a peer that does not read")
			}
		})
	}
}

// TestStreamDialHoldsUpNeitherHealthNorOtherOpens: the first stream to a
// peer dials its session, here to a peer that accepts the connection and
// never answers the handshake. The dial held the peer's stream lock
// throughout, and Health (cheap enough for every load-balancer probe)
// and every other OpenStream to the peer, whatever its context, waited
// for it. Both now return while the dial is still under way.
func TestStreamDialHoldsUpNeitherHealthNorOtherOpens(t *testing.T) {
	c := newCluster(t, 1, func(i int, cfg *transport.Config) { cfg.Timeouts.Handshake = 30 * time.Second })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if conn, err := ln.Accept(); err == nil { // and never answers
			accepted <- conn
		}
	}()
	c.Members.Add(cluster.Member{ID: "mute", Addr: ln.Addr().String()})
	opened := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].OpenStream(context.Background(), "mute", verbRepair)
		opened <- err
	}()
	conn := <-accepted // the dial is under way, in its handshake
	_ = c.Nodes[0].Health()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Nodes[0].OpenStream(ctx, "mute", verbRepair)
	assert.ErrorIs(t, err, context.Canceled)
	select {
	case err := <-opened:
		t.Fatalf("the dial ended first: %v", err)
	default: // Health and the second open returned while the dial went on
	}
	conn.Close()
	assert.Error(t, <-opened)
}

// TestStreamHandlerPanicIsContained: a stream handler that panics is
// recovered, as message and file handlers are, and its stream ends cut
// short (the opener reads io.ErrUnexpectedEOF, not a clean end); the next
// stream is served. The panic took the process down.
func TestStreamHandlerPanicIsContained(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		var b [1]byte
		if _, err := io.ReadFull(s, b[:]); err == nil && b[0] == 'p' {
			panic("a bug in the handler")
		}
		_, _ = s.Write(b[:])
		_ = s.CloseWrite()
	}))
	for _, first := range []byte{'p', 'x'} {
		s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
		require.NoError(t, err)
		_, err = s.Write([]byte{first})
		require.NoError(t, err)
		got, err := io.ReadAll(s)
		if first == 'p' {
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the stream of a handler that panicked is cut short")
		} else {
			assert.NoError(t, err)
			assert.Equal(t, []byte{'x'}, got)
		}
		s.Close()
	}
}
