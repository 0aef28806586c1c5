package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xtaci/smux"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

// These tests speak to a node's stream session as a second implementation
// would, from wire's description alone: a handshake for lane 3, smux v2,
// and inside each smux stream the opening, the status byte and chunks.

const laneStreamSession = 3 // see "Connections" in package wire

// rawStreamSession handshakes with addr as node id for a stream session
// and returns the smux client over it, closed when the test ends.
func rawStreamSession(t *testing.T, addr, id string) *smux.Session {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	hello, err := wire.AppendHello(nil, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		Lane: laneStreamSession, Cluster: "test", Node: id})
	require.NoError(t, err)
	_, err = conn.Write(hello)
	require.NoError(t, err)
	raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	require.NoError(t, err)
	reply, err := wire.DecodeReply(raw)
	require.NoError(t, err)
	require.Equal(t, wire.Accepted, reply.Reason)
	_ = conn.SetDeadline(time.Time{})
	cfg := smux.DefaultConfig()
	cfg.Version = 2
	session, err := smux.Client(conn, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { session.Close() })
	return session
}

// rawOpen opens a smux stream, writes opening and reads the status byte.
func rawOpen(t *testing.T, session *smux.Session, opening []byte) (*smux.Stream, byte) {
	t.Helper()
	st, err := session.OpenStream()
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = st.Write(opening)
	require.NoError(t, err)
	var status [1]byte
	_, err = io.ReadFull(st, status[:])
	require.NoError(t, err)
	return st, status[0]
}

// chunks encodes data as the given chunks and an end marker.
func chunks(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = append(wire.AppendStreamChunkHeader(b, len(p)), p...)
	}
	return wire.AppendStreamChunkHeader(b, 0)
}

func TestStreamSpeaksTheWireFormat(t *testing.T) {
	c := newCluster(t, 2, nil)
	const big = wire.MaxStreamChunk + 1000
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		got, err := io.ReadAll(s) // up to the opener's end marker
		if err != nil {
			return
		}
		_, _ = s.Write(append([]byte("got:"), got...))
		_, _ = s.Write(bytes.Repeat([]byte("x"), big)) // cut at MaxStreamChunk
	}))
	session := rawStreamSession(t, c.Nodes[1].Addr().String(), string(c.ID(0)))

	st, status := rawOpen(t, session, wire.AppendStreamOpen(nil, uint32(verbRepair)))
	require.Equal(t, byte(wire.StreamAccepted), status)
	_, err := st.Write(chunks("hel", "lo")) // boundaries carry no meaning
	require.NoError(t, err)

	got, err := io.ReadAll(st)
	require.NoError(t, err)
	want := chunks("got:hello", string(bytes.Repeat([]byte("x"), wire.MaxStreamChunk)), string(bytes.Repeat([]byte("x"), big-wire.MaxStreamChunk)))
	assert.Equal(t, want, got, "each direction's data in chunks, then the end marker")
}

func TestStreamOpeningRefusals(t *testing.T) {
	c := newCluster(t, 2, nil)
	echoStreams(c)
	session := rawStreamSession(t, c.Nodes[1].Addr().String(), string(c.ID(0)))

	t.Run("unknown verb", func(t *testing.T) {
		st, status := rawOpen(t, session, wire.AppendStreamOpen(nil, 99))
		code, refused := wire.ParseStreamStatus(status)
		assert.True(t, refused)
		assert.Equal(t, wire.FailureUnknownVerb, code)
		rest, err := io.ReadAll(st)
		require.NoError(t, err)
		assert.Empty(t, rest, "the acceptor closes the stream after refusing")
	})
	for name, opening := range map[string][]byte{
		"verb not in its shortest encoding": {byte(verbRepair) | 0x80, 0x00},
		"verb above 2^32-1":                 {0x80, 0x80, 0x80, 0x80, 0x10},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := session.OpenStream()
			require.NoError(t, err)
			defer st.Close()
			_ = st.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = st.Write(opening)
			require.NoError(t, err)
			rest, err := io.ReadAll(st)
			require.NoError(t, err)
			assert.Empty(t, rest, "closed without a status byte")
		})
	}
	t.Run("the session survives", func(t *testing.T) {
		st, status := rawOpen(t, session, wire.AppendStreamOpen(nil, uint32(verbRepair)))
		require.Equal(t, byte(wire.StreamAccepted), status)
		_, err := st.Write(chunks("still here"))
		require.NoError(t, err)
		got, err := io.ReadAll(st)
		require.NoError(t, err)
		assert.Equal(t, chunks("still here"), got)
	})
}

func TestStreamChunkOverTheLimitClosesTheStream(t *testing.T) {
	c := newCluster(t, 2, nil)
	readErr := make(chan error, 1)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, err := io.ReadAll(s)
		readErr <- err
	}))
	session := rawStreamSession(t, c.Nodes[1].Addr().String(), string(c.ID(0)))
	st, status := rawOpen(t, session, wire.AppendStreamOpen(nil, uint32(verbRepair)))
	require.Equal(t, byte(wire.StreamAccepted), status)

	over := []byte{0x00, 0x01, 0x00, 0x01} // MaxStreamChunk + 1
	_, err := st.Write(append(over, bytes.Repeat([]byte("x"), 16)...))
	require.NoError(t, err)

	select {
	case err := <-readErr:
		assert.ErrorIs(t, err, wire.ErrMalformed)
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's Read did not fail")
	}
	_, err = io.ReadAll(st)
	assert.True(t, err == nil || errors.Is(err, io.EOF), "the stream is closed: %v", err)
}

// A stream whose opener closes it without the end marker was cut short:
// the acceptor's Read says so (io.ErrUnexpectedEOF) rather than io.EOF,
// which would pass a truncated stream off as a whole one.
func TestStreamClosedWithoutEndMarker(t *testing.T) {
	c := newCluster(t, 2, nil)
	read := handleReadAll(c.Nodes[1], verbRepair)
	session := rawStreamSession(t, c.Nodes[1].Addr().String(), string(c.ID(0)))
	st, status := rawOpen(t, session, wire.AppendStreamOpen(nil, uint32(verbRepair)))
	require.Equal(t, byte(wire.StreamAccepted), status)
	payload := wire.AppendStreamChunkHeader(nil, 5)
	_, err := st.Write(append(payload, "hello"...)) // a whole chunk, then no end marker
	require.NoError(t, err)
	require.NoError(t, st.Close())

	select {
	case r := <-read:
		assert.Equal(t, "hello", string(r.data))
		assert.ErrorIs(t, r.err, io.ErrUnexpectedEOF)
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's Read did not end")
	}
}

// TestStreamMalformedChunkStaysAnError: a Read that finds a chunk header
// over the limit fails with ErrMalformed and closes the stream; a Read
// after it parsed the bytes that followed as the next chunk header and
// returned bytes the peer never sent as data.
func TestStreamMalformedChunkStaysAnError(t *testing.T) {
	c := newCluster(t, 2, nil)
	type result struct {
		first, second error
		data          []byte
	}
	got := make(chan result, 1)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		var r result
		buf := make([]byte, 64)
		_, r.first = s.Read(buf)
		n, err := s.Read(buf)
		r.second, r.data = err, buf[:n]
		got <- r
	}))
	session := rawStreamSession(t, c.Nodes[1].Addr().String(), string(c.ID(0)))
	st, status := rawOpen(t, session, wire.AppendStreamOpen(nil, uint32(verbRepair)))
	require.Equal(t, byte(wire.StreamAccepted), status)
	over := []byte{0x00, 0x01, 0x00, 0x01} // MaxStreamChunk + 1
	// What follows the bad header is no chunk: its first four bytes only
	// look like one's header.
	_, err := st.Write(append(over, chunks("garbage")...))
	require.NoError(t, err)

	r := within(t, got, 10*time.Second, "the handler's Reads")
	require.ErrorIs(t, r.first, wire.ErrMalformed)
	assert.Error(t, r.second, "a Read after the stream was found malformed")
	assert.Empty(t, r.data, "no bytes after the malformed header are data")
}

// TestStreamSessionRefusedForCapacitySaysOverloaded: a node whose inbound
// limits have no room now for a stream session's buffer (Streams.
// SessionBuffer, taken from Memory.Inbound.Node while another peer's
// session holds it) accepted the handshake and then closed the
// connection: the opener got "EOF", which says nothing of why, instead of
// ErrOverloaded.
func TestStreamSessionRefusedForCapacitySaysOverloaded(t *testing.T) {
	c := newCluster(t, 3, func(i int, cfg *transport.Config) {
		if i == 2 { // room for one session beside a 1 MiB message, not two
			cfg.Memory.MaxMessageSize = 1 << 20
			cfg.Memory.Inbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 8 << 20, Node: 6 << 20}
		}
	})
	echoStreams(c)
	first, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(2), verbRepair)
	require.NoError(t, err)
	defer first.Close()
	_, err = c.Nodes[1].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(2), verbRepair)
	require.Error(t, err)
	t.Logf("OpenStream: %v", err)
	assert.ErrorIs(t, err, transport.ErrOverloaded, "the opener is told why")
	// A refused connection gives back its claim among the peer's stream
	// connections (Security.MaxConnsPerPeer, 4): the tenth is refused for
	// the same reason as the first.
	for range 10 {
		_, err = c.Nodes[1].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(2), verbRepair)
	}
	assert.ErrorIs(t, err, transport.ErrOverloaded)
	assert.ErrorContains(t, err, "no inbound capacity")
}

// TestStreamConnectionThatCanNeverFitIsRefusedForGood: a node whose
// inbound limits leave no room for a stream connection's buffer even with
// none open — MaxMessageSize 60 MiB, whose buffer class takes all of the
// default 64 MiB per peer — refused every stream connection as Busy, and
// its openers got ErrOverloaded, which tells them to try again later, for
// ever. It is refused for good under those limits: ErrRefused, not
// ErrOverloaded, for a session and for a connection of its own alike.
func TestStreamConnectionThatCanNeverFitIsRefusedForGood(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Memory.MaxMessageSize = 60 << 20
		}
	})
	echoStreams(c)
	for _, opts := range [][]transport.StreamOption{nil, {transport.OwnConnection()}} {
		_, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair, opts...)
		require.Error(t, err)
		t.Logf("OpenStream: %v", err)
		assert.ErrorIs(t, err, transport.ErrRefused)
		assert.NotErrorIs(t, err, transport.ErrOverloaded, "no wait makes room under these limits")
		var he *transport.HandshakeError
		if assert.ErrorAs(t, err, &he) {
			assert.Equal(t, wire.Refused, he.Reason, "refused for good, not busy: %v", he)
		}
	}
}

// TestStreamCloseEndsCleanlyForASlowReader: a handler writes an answer
// that fills its opener's window exactly and closes the stream; the
// opener reads it only once Close has returned, more than a second later.
// Close gave its end marker that second to go out and then closed the
// stream without it: the opener read every byte and then the stream cut
// short (io.ErrUnexpectedEOF to an internode reader), a whole answer passed
// off as a broken one. The end marker now waits for the opener's window
// in the background, as the close does.
func TestStreamCloseEndsCleanlyForASlowReader(t *testing.T) {
	c := newCluster(t, 2, nil)
	st, answer, _ := answerFillingTheWindow(t, c)
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(st)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(chunks(string(answer)), got), "the answer, then its end marker: %d bytes, ending %x", len(got), got[max(len(got)-8, 0):])
}

// answerFillingTheWindow opens a stream to c's second node from a raw
// opener whose window is smux's default, and has the handler write an
// answer that fills that window exactly and close the stream. It returns
// once the handler's Close has: the opener's stream, unread, the answer,
// and the handler's stream.
func answerFillingTheWindow(t *testing.T, c *transporttest.Cluster) (*smux.Stream, []byte, *transport.Stream) {
	t.Helper()
	const window = 64 << 10 // smux's default stream window, the raw opener's
	// The chunk's header counts against the window too.
	answer := bytes.Repeat([]byte("a"), window-wire.StreamChunkHeaderSize)
	closed := make(chan error, 1)
	var stream *transport.Stream
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		stream = s
		// The opener's go comes after its window (its reply to the status
		// byte read), which the answer then fills.
		if _, err := io.ReadFull(s, make([]byte, 2)); err != nil {
			closed <- err
			return
		}
		if _, err := s.Write(answer); err != nil {
			closed <- err
			return
		}
		closed <- s.Close()
	}))
	session := rawStreamSession(t, c.Nodes[1].Addr().String(), string(c.ID(0)))
	st, status := rawOpen(t, session, wire.AppendStreamOpen(nil, uint32(verbRepair)))
	require.Equal(t, byte(wire.StreamAccepted), status)
	_, err := st.Write(append(wire.AppendStreamChunkHeader(nil, 2), "go"...))
	require.NoError(t, err)
	require.NoError(t, within(t, closed, 10*time.Second, "the handler's Close"))
	return st, answer, stream
}

// TestStreamEndWaitingForAPeerThatClosesEnds: as
// TestStreamCloseEndsCleanlyForASlowReader, but the opener never reads
// the answer: it closes the stream. The end marker, waiting for a window
// that will not open now, gives up when the read-ahead reads that close,
// not after endTimeout, and the stream lets go of its place among the
// peer's streams; a Write after Close fails at once meanwhile.
func TestStreamEndWaitingForAPeerThatClosesEnds(t *testing.T) {
	c := newCluster(t, 2, nil)
	st, _, stream := answerFillingTheWindow(t, c)
	_, err := stream.Write([]byte("more"))
	require.ErrorIs(t, err, io.ErrClosedPipe, "a Write after Close")

	require.NoError(t, st.Close()) // unread: the answer fills its window
	waitFor(t, 10*time.Second, "the stream lets go of its place once the opener closed", func() bool {
		for _, p := range c.Nodes[1].Health().Peers {
			if p.Peer == c.ID(0) {
				return p.StreamsIn == 0
			}
		}
		return false
	})
}
