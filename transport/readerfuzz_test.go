package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// FuzzReaderAgreeingAll is FuzzReader on connections whose handshake
// agreed every capability, compressed batches among them, and under
// OverloadReject as well as OverloadPause: the decoders FuzzReader does
// not reach — a compressed batch's block, a batch read through a small
// buffer to be rejected (rejectBatch), a compressed one rejected. mode
// picks the overload policy and, under OverloadReject, whether the
// peer's room is full, so that every frame is rejected. Whatever the
// bytes, the reader ends once the connection does, and gives back what
// it took: capacity, the room for rejected compressed frames, the urgent
// lane's allowance, handler goroutines.
func FuzzReaderAgreeingAll(f *testing.F) {
	big := jsonPayload(1, 3000)
	req := wire.FlagExpectsResponse
	for _, mode := range []uint8{0, 1, 2} {
		f.Add(uint8(routing.Small), mode, batchS2Frame(oneWay(1, big), oneWay(2, nil)))
		f.Add(uint8(routing.Urgent), mode, batchS2Frame(message(wire.Header{ID: 3, Verb: 1, Flags: req}, big)))
		f.Add(uint8(routing.Small), mode, append(batchFrame(oneWay(1, big), message(wire.Header{ID: 4, Flags: wire.FlagCancel, Verb: 1}, nil)),
			batchS2Frame(oneWay(5, jsonPayload(2, 9000)))...))
		f.Add(uint8(routing.Small), mode, batchFrame(oneWay(1, make([]byte, 20<<10)), message(wire.Header{ID: 6, Verb: 1, Flags: req}, nil)))
		f.Add(uint8(routing.Large), mode, append(largeBegin(1, wire.Header{ID: 4, Verb: 1, Flags: req}, 10), anyFrame(wire.FrameLargeMore, 1, make([]byte, 10))...))
		f.Add(uint8(routing.Small), mode, anyFrame(wire.FrameBatchS2, 0, []byte{0x80, 0x80, 0x04, 0, 0, 0}))
	}

	const perPeer = 512 << 10
	transports := make([]*Transport, 3)
	for mode := range transports {
		transports[mode] = coreTransport(f, func(c *Config) {
			c.Memory.MaxMessageSize = 256 << 10
			c.Memory.Inbound = Limits{PerConnection: 256 << 10, PerPeer: perPeer, Node: perPeer}
			if mode > 0 {
				c.Memory.InboundOverload = OverloadReject
			}
		})
		tr := transports[mode]
		tr.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, nil }))
		tr.HandleReader(2, ReaderHandlerFunc(func(_ context.Context, _ *Message, body io.Reader) ([]byte, error) {
			_, err := io.Copy(io.Discard, body)
			return nil, err
		}))
	}
	f.Fuzz(func(t *testing.T, lane uint8, mode uint8, input []byte) {
		mode %= uint8(len(transports))
		l := routing.Lane(lane % uint8(routing.NumLanes))
		var filled int64
		if mode == 2 {
			filled = perPeer // the peer's room full: every frame is rejected
		}
		readFuzzed(t, transports[mode], l, transports[mode].offers(uint8(l)), filled, input)
	})
}

// FuzzBackChannel feeds arbitrary bytes to an outbound connection's
// back-channel reader, as an acceptor past its handshake could send
// them, with calls waiting for responses 1 to 4: whatever they are, the
// reader ends once the connection does, and the room it took for
// responses — batches, compressed ones, large ones granted or discarded
// — is given back.
func FuzzBackChannel(f *testing.F) {
	f.Add(uint8(routing.Small), true, batchFrame(response(1, []byte("ok")), response(9, nil)))
	f.Add(uint8(routing.Urgent), false, batchS2Frame(response(2, jsonPayload(1, 3000))))
	f.Add(uint8(routing.Small), true, append(largeBegin(1, wire.Header{ID: 3, Verb: 1, Flags: wire.FlagResponse}, 100),
		anyFrame(wire.FrameLargeMore, 1, make([]byte, 60))...))
	f.Add(uint8(routing.Small), true, append(largeBegin(1, wire.Header{ID: 7, Verb: 1, Flags: wire.FlagResponse}, 100),
		anyFrame(wire.FrameLargeCancel, 1, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureCanceled}))...))
	f.Add(uint8(routing.Large), false, append(anyFrame(wire.FrameGrant, 1, nil),
		anyFrame(wire.FrameRefuse, 2, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureOverloaded}))...))
	f.Add(uint8(routing.Small), true, anyFrame(wire.FrameBatchS2, 0, []byte{0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x03}))
	f.Fuzz(func(t *testing.T, lane uint8, eager bool, input []byte) {
		caps := wire.CapBatchS2
		if eager {
			caps |= wire.CapEagerResponses
		}
		r := newBackRigAgreeing(t, routing.Lane(lane%uint8(routing.NumLanes)), caps, limitedTo(200<<10, 256<<10))
		for id := uint64(1); id <= 4; id++ {
			r.call(id)
		}
		_ = r.far.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = r.far.Write(input) // a reader waiting for its grants to be taken stops reading
		r.far.Close()
		why := within(t, r.ended, 5*time.Second, "the back-channel reader to end")
		r.ended <- why // for the cleanup
		assert.Zero(t, r.p.inAccount.Used(), "room held once the reader ended (%s)", why)
		for id := uint64(1); id <= 4; id++ {
			r.tr.calls.take(id, "n2")
		}
	})
}

// FuzzRejectedBatchReadsAsAHeldOne: a batch frame that OverloadReject
// rejects is decoded a piece at a time, through a small buffer
// (rejectBatch), or, compressed, apart from the limits; one with room is
// decoded whole (handleBatch). Whatever the payload, both readers must
// judge it alike: the same bad input, or each of its messages counted
// once, received by the one and refused by the other.
func FuzzRejectedBatchReadsAsAHeldOne(f *testing.F) {
	req := wire.FlagExpectsResponse
	f.Add(false, bytes.Join([][]byte{oneWay(1, []byte("x")), message(wire.Header{ID: 2, Verb: 1, Flags: req}, nil),
		message(wire.Header{ID: 3, Verb: 1, Flags: wire.FlagCancel}, nil)}, nil))
	f.Add(true, bytes.Join([][]byte{oneWay(1, jsonPayload(1, 9000)), message(wire.Header{ID: 2, Verb: 7}, nil)}, nil))
	f.Add(false, append(oneWay(1, make([]byte, 10<<10)), 0x40))
	f.Add(true, append(oneWay(1, nil), oneWay(2, nil)[:3]...))
	f.Add(false, []byte{})
	f.Fuzz(func(t *testing.T, compressed bool, batch []byte) {
		if len(batch) > wire.DefaultMaxFramePayload || compressed && len(batch) == 0 {
			return
		}
		frame := anyFrame(wire.FrameBatch, 0, batch)
		if compressed {
			frame = anyFrame(wire.FrameBatchS2, 0, wire.AppendBatchS2(nil, batch))
		}
		// The messages the batch holds, if it is one.
		var h wire.Header
		messages := 0
		if err := forEachMessage(batch, wire.DefaultMaxFramePayload, &h, func(*wire.Header, []byte) { messages++ }); err != nil {
			messages = 0
		}
		read := func(full bool) (bad string) {
			r := newReaderRig(t, routing.Small, func(c *Config) {
				limitedTo(256<<10, 512<<10)(c)
				c.Memory.InboundOverload = OverloadReject
			})
			r.tr.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, nil }))
			if full {
				require.True(t, r.ic.peer.inAccount.TryTake(r.ic.peer.inAccount.Limit()))
				defer r.ic.peer.inAccount.Release(r.ic.peer.inAccount.Limit())
			}
			require.NoError(t, r.far.SetWriteDeadline(time.Now().Add(5*time.Second)))
			_, _ = r.far.Write(frame) // a reader that found bad input stops reading
			r.far.Close()
			if err := r.end(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				bad = badInputOf(err).String()
			}
			if bad != "" {
				messages = 0
			}
			outcomes := func() int {
				n := r.in.received.Load()
				for i := range r.in.dropped {
					n += r.in.dropped[i].Load()
				}
				return int(n)
			}
			eventually(t, func() bool { return outcomes() >= messages }, "an outcome for each message")
			assert.Equal(t, messages, outcomes(), "outcomes, the frame read rejected: %v (bad input: %q)", full, bad)
			return bad
		}
		assert.Equal(t, read(false), read(true), "bad input, read whole (want) and rejected (got)")
	})
}

// FuzzAcceptHello feeds arbitrary bytes to an acceptor's handshake, as a
// dialler could send them: whatever they are, it ends within its
// timeout, takes no connection's place unless it accepts, and writes a
// Reply that decodes, or nothing.
func FuzzAcceptHello(f *testing.F) {
	hello := func(h wire.Hello) []byte {
		b, err := wire.AppendHello(nil, &h)
		require.NoError(f, err)
		return b
	}
	f.Add(hello(wire.Hello{MinVersion: 3, MaxVersion: 3, Lane: 1, Capabilities: ^wire.Capabilities(0), Cluster: "test", Node: "n2"}))
	f.Add(hello(wire.Hello{MinVersion: 1, MaxVersion: 2, Lane: 1, Cluster: "test", Node: "n2"}))
	f.Add(hello(wire.Hello{MinVersion: 4, MaxVersion: 9, Lane: 0, Cluster: "test", Node: "n2"}))
	f.Add(hello(wire.Hello{MinVersion: 3, MaxVersion: 3, Lane: 9, Cluster: "test", Node: "n2"}))
	f.Add(hello(wire.Hello{MinVersion: 3, MaxVersion: 3, Lane: 4, Cluster: "other", Node: "n3"}))
	f.Add(hello(wire.Hello{MinVersion: 3, MaxVersion: 3, Lane: 2, Cluster: "test", Node: "n1"}))
	f.Add([]byte{0x16, 3, 1, 0, 5})
	tr := coreTransport(f, func(c *Config) { c.Timeouts.Handshake = time.Second })
	f.Fuzz(func(t *testing.T, input []byte) {
		pc := newPipeConn()
		replies := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(pc.peer)
			replies <- b
		}()
		type accepted struct {
			hello wire.Hello
			p     *peer
			err   error
		}
		done := make(chan accepted, 1)
		go func() {
			_, hello, p, err := tr.acceptHandshake(pc.Conn)
			done <- accepted{hello, p, err}
		}()
		go func() { _, _ = pc.peer.Write(input) }() // what the acceptor does not read stays unwritten
		a := within(t, done, 5*time.Second, "the handshake to end")
		pc.Conn.Close()
		reply := within(t, replies, 5*time.Second, "the reply")
		if a.err != nil {
			assert.Nil(t, a.p, "a refused handshake holds a connection's place: %v", a.err)
		} else {
			tr.releaseStreamConn(a.p, tr.streamConnHold(a.hello.Lane))
			tr.releaseConn(a.p, a.hello.Lane)
		}
		tr.inboundMu.Lock()
		established := tr.established
		tr.inboundMu.Unlock()
		assert.Zero(t, established, "connections held once the handshake is over")
		if len(reply) > 0 {
			raw, err := wire.ReadHandshake(bytes.NewReader(reply), make([]byte, wire.MaxHandshakeSize))
			require.NoError(t, err, "reply % x", reply)
			r, err := wire.DecodeReply(raw)
			require.NoError(t, err)
			assert.Equal(t, a.err == nil, r.Reason == wire.Accepted, "accepted, and its Reply: %+v (%v)", r, a.err)
		}
	})
}
