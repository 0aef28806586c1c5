package transport_test

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
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// wireFrame is a frame a fake responder read from the requester.
type wireFrame struct {
	kind    wire.FrameKind
	stream  uint32
	payload []byte
}

// stallingResponder is the acceptor of a requester's small lane, played by
// the test on a loopback socket: it agrees caps of what the requester
// offers, beats every wire.KeepaliveInterval as a live peer does, and
// passes on what the requester writes, but for its pings.
type stallingResponder struct {
	t      *testing.T
	conn   net.Conn
	wmu    sync.Mutex
	frames chan wireFrame
	done   chan struct{} // closed when the test ends
}

// acceptStalling accepts connections on ln; the first of the small lane is
// the fake responder's, any other is closed at once (the cancel of a
// request dials the urgent lane).
func acceptStalling(t *testing.T, ln net.Listener, caps wire.Capabilities) *stallingResponder {
	t.Helper()
	got := make(chan *stallingResponder, 1)
	done := make(chan struct{})
	var mu sync.Mutex
	var conns []net.Conn
	var accepting sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		ln.Close()
		accepting.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			conn.Close()
		}
	})
	accepting.Add(1)
	go func() {
		defer accepting.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
			if err != nil {
				conn.Close()
				continue
			}
			hello, err := wire.DecodeHello(raw)
			if err != nil || hello.Lane != uint8(routing.Small) {
				conn.Close()
				continue
			}
			_ = conn.SetDeadline(time.Time{})
			f := &stallingResponder{t: t, conn: conn, frames: make(chan wireFrame, 64), done: done}
			f.write(wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion, Capabilities: hello.Capabilities & caps}))
			f.write(wire.AppendFrameHeader(nil, wire.FrameBeat, 0))
			go f.beat()
			go f.read()
			got <- f
		}
	}()
	return within(t, got, 10*time.Second, "the requester's connection")
}

func (f *stallingResponder) write(b []byte) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_ = f.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = f.conn.Write(b)
}

func (f *stallingResponder) frame(kind wire.FrameKind, stream uint32, payload []byte) {
	f.write(append(wire.AppendFrameHeader(nil, kind, stream, payload), payload...))
}

func (f *stallingResponder) beat() {
	tick := time.NewTicker(wire.KeepaliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-f.done:
			return
		case <-tick.C:
		}
		f.wmu.Lock()
		_ = f.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := f.conn.Write(wire.AppendFrameHeader(nil, wire.FrameBeat, 0))
		f.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

func (f *stallingResponder) read() {
	defer close(f.frames)
	hdr := make([]byte, wire.FrameHeaderSize)
	for {
		if _, err := io.ReadFull(f.conn, hdr); err != nil {
			return
		}
		fh, err := wire.ParseFrameHeader(hdr, wire.DefaultMaxFramePayload)
		if err != nil {
			return
		}
		payload := make([]byte, fh.Length)
		if _, err := io.ReadFull(f.conn, payload); err != nil {
			return
		}
		if fh.Kind != wire.FramePing {
			f.frames <- wireFrame{fh.Kind, fh.Stream, payload}
		}
	}
}

// next is the requester's next frame but for its pings.
func (f *stallingResponder) next(what string) wireFrame {
	f.t.Helper()
	select {
	case fr, ok := <-f.frames:
		require.True(f.t, ok, "the requester's connection ended, waiting for %s", what)
		return fr
	case <-time.After(10 * time.Second):
		f.t.Fatalf("timed out waiting for %s", what)
		return wireFrame{}
	}
}

// request reads the request the requester wrote, and returns its header.
func (f *stallingResponder) request() wire.Header {
	f.t.Helper()
	fr := f.next("the request")
	require.Equal(f.t, wire.FrameBatch, fr.kind)
	h, _, err := wire.DecodeHeader(fr.payload, 1<<20)
	require.NoError(f.t, err)
	require.NotZero(f.t, h.Flags&wire.FlagExpectsResponse)
	return h
}

// givenUpRig is a requester node, a fake responder it reached, and a
// request the responder is answering with a large response (respSize
// bytes on stream 1, one part of it written), whose caller can give up.
type givenUpRig struct {
	requester *transport.Transport
	fake      *stallingResponder
	id        uint64
	cancel    context.CancelFunc
	errc      chan error
}

const (
	givenUpVerb     transport.Verb = 151
	givenUpRespSize                = 4 << 20
	givenUpPart                    = 256 << 10
)

func newGivenUpRig(t *testing.T, caps wire.Capabilities) *givenUpRig {
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = 8 << 20
		roomy := transport.Limits{PerConnection: 16 << 20, PerPeer: 16 << 20, Node: 32 << 20}
		cfg.Memory.Inbound, cfg.Memory.Outbound = roomy, roomy
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	c.Members.Add(cluster.Member{ID: "fake", Addr: ln.Addr().String()})
	r := &givenUpRig{requester: c.Nodes[0], errc: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.cancel = cancel
	go func() {
		_, err := r.requester.Request(ctx, "fake", givenUpVerb, []byte("read"))
		r.errc <- err
	}()
	r.fake = acceptStalling(t, ln, caps)
	r.id = r.fake.request().ID
	h := wire.Header{Flags: wire.FlagResponse, ID: r.id, Verb: uint32(givenUpVerb), CreatedAt: time.Now().UnixNano(),
		PayloadLength: givenUpRespSize}
	r.fake.frame(wire.FrameLargeBegin, 1, wire.AppendHeader(nil, &h))
	if caps&wire.CapEagerResponses == 0 {
		fr := r.fake.next("the grant")
		require.Equal(t, wireFrame{kind: wire.FrameGrant, stream: 1, payload: []byte{}}, fr)
	}
	r.fake.frame(wire.FrameLargeMore, 1, make([]byte, givenUpPart))
	// Answered behind the part: the requester has read the part once the
	// answer is back.
	r.roundTrip(t)
	assert.GreaterOrEqual(t, r.requester.Stats().InboundHeld, int64(givenUpRespSize), "the response's room taken")
	return r
}

// roundTrip makes a request the fake responder answers at once, with a
// small response behind what it wrote before.
func (r *givenUpRig) roundTrip(t *testing.T) {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		resp, err := r.requester.Request(ctxTimeout(t, 10*time.Second), "fake", givenUpVerb, []byte("again"))
		assert.NoError(t, err)
		got <- resp
	}()
	h := r.fake.request()
	resp := wire.Header{Flags: wire.FlagResponse, ID: h.ID, Verb: h.Verb, CreatedAt: time.Now().UnixNano(), PayloadLength: 2}
	r.fake.frame(wire.FrameBatch, 0, append(wire.AppendHeader(nil, &resp), "ok"...))
	assert.Equal(t, "ok", string(within(t, got, 10*time.Second, "the small response")))
}

// giveUp cancels the caller's request and waits for it to return.
func (r *givenUpRig) giveUp(t *testing.T) {
	r.cancel()
	require.ErrorIs(t, within(t, r.errc, 10*time.Second, "the cancelled request"), context.Canceled)
}

// refused waits for the requester's refusal of the response, withdraws
// the rest of it as a responder does, and checks that the requester
// counted it once, gave its room back, and reads the connection on.
func (r *givenUpRig) refused(t *testing.T) {
	fr := r.fake.next("the refusal of the response")
	require.Equal(t, wire.FrameRefuse, fr.kind, "the requester's next frame after its caller gave up")
	assert.Equal(t, uint32(1), fr.stream)
	f, err := wire.DecodeFailure(fr.payload)
	require.NoError(t, err)
	assert.Equal(t, wire.FailureExpired, f.Code)
	waitFor(t, 10*time.Second, "the response's room given back", func() bool {
		return r.requester.Stats().InboundHeld == 0
	})
	r.fake.frame(wire.FrameLargeCancel, 1, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureExpired}))

	// The connection goes on: another request is answered on it.
	r.roundTrip(t)
	st := laneStats(t, r.requester, "fake", routing.Small)
	assert.Equal(t, uint64(1), st.DroppedInbound[transport.ReasonExpired], "the given-up response counted once: %v", st.DroppedInbound)
	assert.Equal(t, uint64(2), st.MessagesReceived, "the small responses")
	assert.Zero(t, r.requester.Stats().BadInput[transport.BadInputMalformed])
}

// TestGrantedLargeResponseGivenUpIsRefused: a large response the
// requester granted (the responder did not agree
// wire.CapEagerResponses), whose caller gives up while its parts come, is
// refused as an eager one is, and its room is given back, rather than
// read to its end for no one: the requester went on reading all 4 MiB of
// it, holding its room, and sent no refusal.
// (Eager, it was refused at that part already.)
func TestGrantedLargeResponseGivenUpIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps wire.Capabilities
	}{{"granted", 0}, {"eager", wire.CapEagerResponses}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newGivenUpRig(t, tc.caps)
			r.giveUp(t)
			r.fake.frame(wire.FrameLargeMore, 1, make([]byte, givenUpPart)) // a part after it
			r.refused(t)
		})
	}
}

// TestLargeResponseGivenUpWhileStalledIsRefused: a large response whose
// responder stops between two parts (alive: it beats) while its caller
// gives up is refused at the give-up, and its room given back at once;
// the requester looked only as each part came, and held the response's
// 4 MiB of room until the next one, however late, or the connection's
// end.
func TestLargeResponseGivenUpWhileStalledIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps wire.Capabilities
	}{{"eager", wire.CapEagerResponses}, {"granted", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newGivenUpRig(t, tc.caps)
			r.giveUp(t)
			r.refused(t)
		})
	}
}
