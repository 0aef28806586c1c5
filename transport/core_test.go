package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// This file holds what the socketless tests of the writer and reader
// cores share: a recording outSink, a frame decoder, a transport built on
// a listener that never accepts, and a reader fed through an in-memory
// pipe, with encoders for what a peer would send it.

// recordingSink is an outSink that remembers every outcome.
type recordingSink struct {
	mu        sync.Mutex
	account   *limit.Account
	writes    int
	messages  int
	bytes     int
	responses int
	fails     map[uint64]Reason
	failErrs  map[uint64]error
	payloads  map[uint64][]byte
	requests  []uint64
	released  int64
}

func newRecordingSink(limitBytes int64) *recordingSink {
	return &recordingSink{
		account:  limit.NewBudget(limitBytes).Root().Child(limitBytes, true),
		fails:    map[uint64]Reason{},
		failErrs: map[uint64]error{},
		payloads: map[uint64][]byte{},
	}
}

func (s *recordingSink) wrote(messages, bytes, responses int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	s.messages += messages
	s.bytes += bytes
	s.responses += responses
}

func (s *recordingSink) failed(m *outMsg, reason Reason, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, twice := s.fails[m.id]; twice {
		panic("a message failed twice")
	}
	s.fails[m.id] = reason
	s.failErrs[m.id] = err
	s.payloads[m.id] = bytes.Clone(m.payload)
}

func (s *recordingSink) release(n int64) {
	s.mu.Lock()
	s.released += n
	s.mu.Unlock()
	s.account.Release(n)
}

func (s *recordingSink) requestWritten(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, id)
}

// frame is one decoded frame.
type frame struct {
	kind    wire.FrameKind
	stream  uint32
	payload []byte
}

// readFrames decodes every frame in b, failing the test on bad bytes.
func readFrames(t testing.TB, b []byte) []frame {
	t.Helper()
	var out []frame
	for len(b) > 0 {
		fh, err := wire.ParseFrameHeader(b, 1<<20)
		require.NoError(t, err)
		payload := b[wire.FrameHeaderSize : wire.FrameHeaderSize+int(fh.Length)]
		require.NoError(t, fh.Verify(payload))
		out = append(out, frame{fh.Kind, fh.Stream, bytes.Clone(payload)})
		b = b[wire.FrameHeaderSize+int(fh.Length):]
	}
	return out
}

// messagesIn decodes the messages of a batch frame.
func messagesIn(t testing.TB, f frame) (ids []uint64, payloads [][]byte) {
	t.Helper()
	require.Equal(t, wire.FrameBatch, f.kind)
	require.NoError(t, forEachMessage(f.payload, 1<<30, new(wire.Header), func(h *wire.Header, p []byte) {
		ids = append(ids, h.ID)
		payloads = append(payloads, bytes.Clone(p))
	}))
	return ids, payloads
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// idleListener never accepts: a transport built on it has no socket.
type idleListener struct {
	once   sync.Once
	closed chan struct{}
}

func newIdleListener() *idleListener { return &idleListener{closed: make(chan struct{})} }

func (l *idleListener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}
func (l *idleListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *idleListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// coreTransport builds a transport that is never started and has no
// socket, for the reader core's tests; tweak adjusts its config.
func coreTransport(t testing.TB, tweak func(*Config)) *Transport {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = "n1", "test", "127.0.0.1:0"
	members := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "127.0.0.1:1"})
	cfg.Membership = members
	cfg.Telemetry.Logger = discardLogger
	cfg.Telemetry.DisableSocketMeasurement = true
	if tweak != nil {
		tweak(&cfg)
	}
	require.NoError(t, cfg.Validate())
	tr, err := newTransport(cfg, newIdleListener())
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// pipeConn is an in-memory connection for the reader core: what the test
// writes into it the reader reads; what the reader writes back (the back
// channel) the test reads from back.
type pipeConn struct {
	net.Conn // the reader's end of a net.Pipe
	peer     net.Conn
}

func newPipeConn() *pipeConn {
	a, b := net.Pipe()
	return &pipeConn{Conn: a, peer: b}
}

// backFrames reads back-channel frames from the pipe's far end until
// stop is closed, handing all but beats to out.
func backFrames(conn net.Conn, out chan<- frame) {
	var hdr [wire.FrameHeaderSize]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			close(out)
			return
		}
		fh, err := wire.ParseFrameHeader(hdr[:], 1<<20)
		if err != nil {
			close(out)
			return
		}
		payload := make([]byte, fh.Length)
		if _, err := io.ReadFull(conn, payload); err != nil {
			close(out)
			return
		}
		if fh.Kind != wire.FrameBeat {
			out <- frame{fh.Kind, fh.Stream, payload}
		}
	}
}

// within waits for a value from ch, or fails after d.
func within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// discardLogger drops the transport's logs: tests assert on counters.
var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// readerRig is one inConn, read over a pipe.
type readerRig struct {
	t     *testing.T
	tr    *Transport
	ic    *inConn
	in    *inCounters
	far   net.Conn   // the sender's end
	back  chan frame // back-channel frames other than beats
	ended chan error // what read returned
	drops chan DroppedMessage
}

func newReaderRig(t *testing.T, lane routing.Lane, tweak func(*Config)) *readerRig {
	return newReaderRigAgreeing(t, lane, ^wire.Capabilities(0), tweak)
}

// newReaderRigAgreeing is newReaderRig on a connection whose handshake
// agreed what the transport offers of caps.
func newReaderRigAgreeing(t *testing.T, lane routing.Lane, caps wire.Capabilities, tweak func(*Config)) *readerRig {
	return newReaderRigOver(t, lane, caps, tweak, nil)
}

// newReaderRigOver is newReaderRigAgreeing on the reader's end of the pipe
// as wrap, when not nil, wraps it.
func newReaderRigOver(t *testing.T, lane routing.Lane, caps wire.Capabilities, tweak func(*Config), wrap func(net.Conn) net.Conn) *readerRig {
	r := &readerRig{t: t, back: make(chan frame, 256), ended: make(chan error, 1), drops: make(chan DroppedMessage, 1024)}
	r.tr = coreTransport(t, func(c *Config) {
		c.OnDropped = func(d DroppedMessage) { r.drops <- d }
		if tweak != nil {
			tweak(c)
		}
	})
	p, err := r.tr.claimConn("n2", uint8(lane))
	require.NoError(t, err)
	pc := newPipeConn()
	r.far = pc.peer
	var conn net.Conn = pc.Conn
	if wrap != nil {
		conn = wrap(conn)
	}
	r.ic = newInConn(r.tr, p, lane, conn, caps&r.tr.offers(uint8(lane)))
	r.in = r.ic.counters
	require.True(t, r.tr.trackInConn(r.ic, true))
	go backFrames(pc.peer, r.back)
	go func() {
		ic := r.ic
		ic.startBeats()
		err := ic.read()
		ic.end()
		r.tr.trackInConn(ic, false)
		r.ended <- err
	}()
	t.Cleanup(func() {
		r.far.Close()
		within(t, r.ended, 5*time.Second, "the reader to end")
	})
	return r
}

// write sends bytes as the peer would; it fails the test if the reader
// does not take them in time.
func (r *readerRig) write(b []byte) {
	r.t.Helper()
	require.NoError(r.t, r.far.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := r.far.Write(b)
	require.NoError(r.t, err)
}

// writeAsync sends bytes from another goroutine: for a reader that pauses.
func (r *readerRig) writeAsync(b []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := r.far.Write(b)
		done <- err
	}()
	return done
}

// end waits for the reader to return, and returns its error.
func (r *readerRig) end() error {
	r.t.Helper()
	err := within(r.t, r.ended, 5*time.Second, "the reader to end")
	r.ended <- err // for the cleanup
	return err
}

// used is the inbound capacity the connection holds.
func (r *readerRig) used() int64 { return r.ic.account.Used() }

// message encodes one message: header and payload.
func message(h wire.Header, payload []byte) []byte {
	h.PayloadLength = uint32(len(payload))
	if h.CreatedAt == 0 {
		h.CreatedAt = time.Now().UnixNano()
	}
	return append(wire.AppendHeader(nil, &h), payload...)
}

// oneWay encodes a one-way message of verb 1.
func oneWay(id uint64, payload []byte) []byte {
	return message(wire.Header{ID: id, Verb: 1}, payload)
}

// batchFrame frames messages as one batch.
func batchFrame(messages ...[]byte) []byte {
	var body []byte
	for _, m := range messages {
		body = append(body, m...)
	}
	return append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, body), body...)
}

// anyFrame frames payload as kind on stream.
func anyFrame(kind wire.FrameKind, stream uint32, payload []byte) []byte {
	return append(wire.AppendFrameHeader(nil, kind, stream, payload), payload...)
}

// recorder is a handler that records what it was given; gate, when not
// nil, holds each call until it is closed.
type recorder struct {
	mu       sync.Mutex
	ids      []uint64
	payloads [][]byte
	got      chan uint64
	gate     chan struct{}
}

func newRecorder(gated bool) *recorder {
	r := &recorder{got: make(chan uint64, 2048)}
	if gated {
		r.gate = make(chan struct{})
	}
	return r
}

func (h *recorder) ServeMessage(_ context.Context, m *Message) ([]byte, error) {
	h.mu.Lock()
	h.ids = append(h.ids, m.ID)
	h.payloads = append(h.payloads, append([]byte(nil), m.Payload...))
	h.mu.Unlock()
	h.got <- m.ID
	if h.gate != nil {
		<-h.gate
	}
	return nil, nil
}

func (h *recorder) seen() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.ids...)
}

// eventually waits for cond, polling: for effects of another goroutine
// that nothing signals.
func eventually(t testing.TB, cond func() bool, what string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, time.Millisecond, what)
}

// limitedTo sets MaxMessageSize and every inbound limit.
func limitedTo(maxMessage int, limit int64) func(*Config) {
	return func(c *Config) {
		c.Memory.MaxMessageSize = maxMessage
		c.Memory.Inbound = Limits{PerConnection: limit, PerPeer: limit, Node: limit}
	}
}

// holdLarge sends a whole large message of size bytes on stream and waits
// until h, a gated handler, holds it — and with it, its room.
func (r *readerRig) holdLarge(h *recorder, stream uint32, id uint64, size int) {
	r.t.Helper()
	r.write(largeBegin(stream, wire.Header{ID: id, Verb: 1}, size))
	require.Equal(r.t, wire.FrameGrant, within(r.t, r.back, 5*time.Second, "the grant").kind)
	for off := 0; off < size; off += r.tr.maxFrame {
		r.write(anyFrame(wire.FrameLargeMore, stream, make([]byte, min(r.tr.maxFrame, size-off))))
	}
	within(r.t, h.got, 5*time.Second, "the handler to hold the message")
}
