package wire_test

// Cross-checks of the package against the codec written from doc.go
// alone in spec_codec_test.go: handshake, frames, message headers,
// failures.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

// specErrName names the sentinel err wraps, "nil" for none. doc.go does
// not say which of ErrTruncated and ErrMalformed a decoder returns for
// bytes that end early inside a length-delimited item, only that both
// close the connection, so they are one name here.
func specErrName(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, wire.ErrTruncated), errors.Is(err, wire.ErrMalformed):
		return "malformed or truncated"
	}
	for _, s := range []error{wire.ErrChecksum, wire.ErrBadMagic, wire.ErrFrameTooLarge,
		wire.ErrMessageTooLarge, wire.ErrHandshakeTooLarge} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "unexpected: " + err.Error()
}

// mutate returns a copy of b with a few random bytes changed, cut or grown.
func mutate(rng *rand.Rand, b []byte) []byte {
	out := append([]byte(nil), b...)
	for range 1 + rng.IntN(3) {
		switch rng.IntN(4) {
		case 0:
			if len(out) > 0 {
				out = out[:rng.IntN(len(out))]
			}
		case 1:
			out = append(out, byte(rng.Uint32()))
		default:
			if len(out) > 0 {
				i := rng.IntN(len(out))
				out[i] ^= byte(1 << rng.IntN(8))
			}
		}
	}
	return out
}

func randString(rng *rand.Rand, max int) string {
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

// randUint returns values of 1 to bits bits, so that every varint length
// is as likely.
func randUint(rng *rand.Rand, bits int) uint64 {
	return rng.Uint64() >> (64 - 1 - rng.IntN(bits))
}

func TestSpecHelloExample(t *testing.T) {
	want := []byte{
		0x49, 0x4e, 0x4f, 0x44, 0x00, 0x10, 0x03, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00,
		0x01, 0x63, 0x02, 0x6e, 0x31, 0x4e, 0x47, 0x66, 0x65,
	}
	assert.Equal(t, want, specAppendHello(specHello{min: 3, max: 3, lane: 2, cluster: "c", node: "n1"}))
	got, err := wire.AppendHello(nil, &wire.Hello{MinVersion: 3, MaxVersion: 3, Lane: 2, Cluster: "c", Node: "n1"})
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestSpecHandshake(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		h := specHello{
			min: uint8(1 + rng.IntN(4)), lane: uint8(rng.IntN(6)), caps: rng.Uint32(),
			cluster: randString(rng, 255), node: randString(rng, 255),
		}
		h.max = h.min + uint8(rng.IntN(3))
		enc := specAppendHello(h)
		require.LessOrEqual(t, len(enc), wire.MaxHandshakeSize)
		pkg, err := wire.AppendHello(nil, &wire.Hello{
			MinVersion: h.min, MaxVersion: h.max, Lane: h.lane,
			Capabilities: wire.Capabilities(h.caps), Cluster: h.cluster, Node: h.node,
		})
		require.NoError(t, err)
		require.Equal(t, enc, pkg)

		bad := mutate(rng, enc)
		if rng.IntN(2) == 0 && len(bad) >= 10 { // get past the checksum
			binary.BigEndian.PutUint16(bad[4:], uint16(len(bad)-6))
			binary.BigEndian.PutUint32(bad[len(bad)-4:], crc32.Checksum(bad[:len(bad)-4], specCRC))
		}
		want, specErr := specDecodeHello(bad)
		got, pkgErr := wire.DecodeHello(bad)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			require.Equal(t, want, specHello{got.MinVersion, got.MaxVersion, got.Lane, uint32(got.Capabilities), got.Cluster, got.Node})
		}

		r := specReply{reason: uint8(rng.IntN(9)), caps: rng.Uint32(), message: randString(rng, 255)}
		if r.reason == 0 {
			r.version = 3
		}
		enc = specAppendReply(r)
		pkg = wire.AppendReply(nil, &wire.Reply{Version: r.version, Reason: wire.RefuseReason(r.reason),
			Capabilities: wire.Capabilities(r.caps), Message: r.message})
		require.Equal(t, enc, pkg)
		bad = mutate(rng, enc)
		if rng.IntN(2) == 0 && len(bad) >= 10 {
			binary.BigEndian.PutUint16(bad[4:], uint16(len(bad)-6))
			binary.BigEndian.PutUint32(bad[len(bad)-4:], crc32.Checksum(bad[:len(bad)-4], specCRC))
		}
		wantR, specErr := specDecodeReply(bad)
		gotR, pkgErr := wire.DecodeReply(bad)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			require.Equal(t, wantR, specReply{gotR.Version, uint8(gotR.Reason), uint32(gotR.Capabilities), gotR.Message})
		}
	}
}

func TestSpecHandshakeRejections(t *testing.T) {
	hello := specAppendHello(specHello{min: 3, max: 3, cluster: "c", node: "n1"})
	reseal := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], specCRC))
		return b
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), hello...)) }
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"bad magic":       {edit(func(b []byte) []byte { b[0] = 'X'; return b }), wire.ErrBadMagic},
		"body_len > 1018": {edit(func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:], 1019); return b }), wire.ErrHandshakeTooLarge},
		"bad checksum":    {edit(func(b []byte) []byte { b[len(b)-1]++; return b }), wire.ErrChecksum},
		"min_ver 0":       {edit(func(b []byte) []byte { b[6] = 0; return reseal(b) }), wire.ErrMalformed},
		"min above max":   {edit(func(b []byte) []byte { b[6] = 4; return reseal(b) }), wire.ErrMalformed},
		"node_len short":  {edit(func(b []byte) []byte { b[15] = 1; return reseal(b) }), wire.ErrMalformed},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := wire.DecodeHello(tc.b)
			assert.ErrorIs(t, err, tc.want)
			_, err = wire.ReadHandshake(bytes.NewReader(tc.b), make([]byte, wire.MaxHandshakeSize))
			if !errors.Is(tc.want, wire.ErrMalformed) {
				assert.ErrorIs(t, err, tc.want, "ReadHandshake")
			}
		})
	}
	// A Hello with an empty node ID is 19 bytes and decodes: refusing it is
	// the acceptor's business.
	empty := specAppendHello(specHello{min: 3, max: 3})
	assert.Len(t, empty, 19)
	_, err := wire.DecodeHello(empty)
	assert.NoError(t, err)

	v, ok := wire.Negotiate(&wire.Hello{MinVersion: 1, MaxVersion: 9})
	assert.True(t, ok)
	assert.Equal(t, uint8(3), v)
	_, ok = wire.Negotiate(&wire.Hello{MinVersion: 1, MaxVersion: 2})
	assert.False(t, ok, "versions 1 and 2 are retired")
}

func TestSpecFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const limit = wire.DefaultMaxFramePayload
	for range 5000 {
		kind := uint8(rng.IntN(9))
		var stream uint32
		if specHasStream(kind) {
			stream = 1 + rng.Uint32N(wire.MaxStream)
		}
		var payload []byte
		if !specEmpty(kind) {
			payload = []byte(randString(rng, 64))
		}
		enc := specAppendFrame(nil, kind, stream, payload)
		// The package frames the payload in parts: any cut gives the same bytes.
		cut := rng.IntN(len(payload) + 1)
		pkg := wire.AppendFrameHeader(nil, wire.FrameKind(kind), stream, payload[:cut], payload[cut:])
		require.Equal(t, enc[:wire.FrameHeaderSize], pkg)

		bad := mutate(rng, enc[:wire.FrameHeaderSize])
		if rng.IntN(4) == 0 && len(bad) >= 4 {
			binary.BigEndian.PutUint32(bad, uint32(limit-2+rng.IntN(4)))
		}
		want, specErr := specParseFrameHeader(bad, limit)
		got, pkgErr := wire.ParseFrameHeader(bad, limit)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr != nil {
			continue
		}
		require.Equal(t, want, specFrameHeader{got.Length, uint8(got.Kind), got.Stream, got.Checksum})
		if int(got.Length) == len(payload) {
			crcOK := crc32.Update(crc32.Checksum(bad[:8], specCRC), specCRC, payload) == want.crc
			err := got.Verify(payload)
			require.Equal(t, crcOK, err == nil, "% x", bad)
			if !crcOK {
				require.ErrorIs(t, err, wire.ErrChecksum)
			}
		}
	}
}

func TestSpecFrameRejections(t *testing.T) {
	for name, tc := range map[string]struct {
		kind   uint8
		stream uint32
		length uint32
		want   error
	}{
		"kind 9":            {9, 0, 0, wire.ErrMalformed},
		"kind 255":          {255, 0, 0, wire.ErrMalformed},
		"batch with stream": {0, 1, 10, wire.ErrMalformed},
		"begin no stream":   {1, 0, 10, wire.ErrMalformed},
		"ping payload":      {4, 0, 1, wire.ErrMalformed},
		"grant payload":     {5, 1, 1, wire.ErrMalformed},
		"beat payload":      {7, 0, 1, wire.ErrMalformed},
		"above the limit":   {0, 0, 1001, wire.ErrFrameTooLarge},
		"2^32-1":            {8, 0, 1<<32 - 1, wire.ErrFrameTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			b := binary.BigEndian.AppendUint32(nil, tc.length)
			b = append(b, tc.kind, byte(tc.stream>>16), byte(tc.stream>>8), byte(tc.stream), 0, 0, 0, 0)
			_, err := wire.ParseFrameHeader(b, 1000)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func randMsg(rng *rand.Rand) specMsg {
	kinds := []uint8{0, 0x01, 0x02, 0x02 | 0x04, 0x20}
	m := specMsg{
		flags:     kinds[rng.IntN(len(kinds))],
		id:        randUint(rng, 64),
		verb:      randUint(rng, 32),
		createdAt: int64(rng.Uint64()),
	}
	if rng.IntN(2) == 0 {
		m.flags |= 0x10
		m.ttl = 1 + randUint(rng, 62)%wire.MaxTTL
	}
	if rng.IntN(2) == 0 {
		m.flags |= 0x08
		for len(m.params) == 0 || rng.IntN(3) > 0 && len(m.params) < 3000 {
			m.params = specAppendUvarint(m.params, 5)
			m.params = append(m.params, "key"+string(rune('a'+rng.IntN(3)))+"x"...)
			v := randString(rng, 200)
			m.params = specAppendUvarint(m.params, uint64(len(v)))
			m.params = append(m.params, v...)
		}
	}
	if m.flags&0x20 == 0 {
		m.payloadLen = randUint(rng, 32)
	}
	return m
}

func TestSpecMessageHeader(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const limit = 1 << 31
	for range 5000 {
		m := randMsg(rng)
		enc := specAppendMsg(nil, m)
		require.LessOrEqual(t, len(enc), wire.MaxHeaderSize)
		pkg := wire.AppendHeader(nil, &wire.Header{
			Flags: wire.MessageFlags(m.flags), ID: m.id, Verb: uint32(m.verb), CreatedAt: m.createdAt,
			TTL: int64(m.ttl), Params: m.params, PayloadLength: uint32(m.payloadLen),
		})
		require.Equal(t, enc, pkg)

		bad := enc
		if rng.IntN(4) > 0 {
			bad = mutate(rng, enc)
		}
		want, wantN, specErr := specDecodeMsg(bad, limit)
		got, gotN, pkgErr := wire.DecodeHeader(bad, limit)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			require.Equal(t, wantN, gotN)
			require.Equal(t, want, specMsg{uint8(got.Flags), got.ID, uint64(got.Verb), got.CreatedAt,
				uint64(got.TTL), got.Params, uint64(got.PayloadLength)}, "% x", bad)
		}
		if m.flags&0x08 != 0 {
			pairs, err := specParams(m.params)
			require.NoError(t, err)
			v, ok := wire.Param(m.params, pairs[0][0])
			require.True(t, ok)
			require.Equal(t, pairs[0][1], string(v), "the first of a repeated key counts")
		}
	}
}

func TestSpecMessageRejections(t *testing.T) {
	hdr := func(flags uint8, tail ...byte) []byte {
		b := append([]byte{flags, 7, 9}, make([]byte, 8)...)
		return append(b, tail...)
	}
	ttl := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"bit 6":                 {hdr(0x40, 0), wire.ErrMalformed},
		"bit 7":                 {hdr(0x80, 0), wire.ErrMalformed},
		"request and response":  {hdr(0x03, 0), wire.ErrMalformed},
		"response and cancel":   {hdr(0x22, 0), wire.ErrMalformed},
		"failure alone":         {hdr(0x04, 0), wire.ErrMalformed},
		"ttl 0":                 {hdr(0x10, append(ttl(0), 0)...), wire.ErrMalformed},
		"ttl above MaxTTL":      {hdr(0x10, append(ttl(wire.MaxTTL+1), 0)...), wire.ErrMalformed},
		"params_len 0":          {hdr(0x08, 0, 0), wire.ErrMalformed},
		"params_len 4097":       {hdr(0x08, 0x81, 0x20), wire.ErrMalformed},
		"long varint":           {hdr(0, 0x80, 0x00), wire.ErrMalformed},
		"payload_len 2^32":      {hdr(0, 0x80, 0x80, 0x80, 0x80, 0x10), wire.ErrMessageTooLarge},
		"payload above limit":   {hdr(0, 0x81, 0x08), wire.ErrMessageTooLarge},
		"cancel with a payload": {hdr(0x20, 1), wire.ErrMalformed},
		"truncated":             {hdr(0x10, 1, 2), wire.ErrTruncated},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := wire.DecodeHeader(tc.b, 1024)
			assert.ErrorIs(t, err, tc.want)
		})
	}
	verb := append([]byte{0, 7}, 0x80, 0x80, 0x80, 0x80, 0x10) // verb 2^32
	_, _, err := wire.DecodeHeader(append(verb, make([]byte, 9)...), 1024)
	assert.ErrorIs(t, err, wire.ErrMalformed, "verb 2^32")

	for _, block := range [][]byte{{3, 'a'}, {1, 'a', 2, 'b'}, {1, 'a'}} {
		err := wire.RangeParams(block, func(k, v []byte) bool { return true })
		assert.ErrorIs(t, err, wire.ErrMalformed, "% x", block)
		_, specErr := specParams(block)
		assert.Error(t, specErr)
	}
}

func TestSpecSetTTL(t *testing.T) {
	m := specMsg{flags: 0x10 | 0x08, id: 300, verb: 2, createdAt: -5, ttl: 99, params: []byte{1, 'k', 0}}
	b := specAppendMsg(nil, m)
	for _, tc := range []struct{ set, want int64 }{{12345, 12345}, {0, 1}, {-7, 1}, {wire.MaxTTL + 1, wire.MaxTTL}} {
		require.NoError(t, wire.SetTTL(b, tc.set))
		got, _, err := specDecodeMsg(b, 0)
		require.NoError(t, err)
		assert.Equal(t, uint64(tc.want), got.ttl)
	}
	h, _, err := wire.DecodeHeader(b, 0)
	require.NoError(t, err)
	assert.Equal(t, int64(1000+wire.MaxTTL), h.Deadline(1000), "deadline is arrival plus ttl")
}

func TestSpecFailure(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		code, msg := uint8(rng.IntN(256)), randString(rng, wire.MaxFailureMessage)
		enc := specAppendFailure(nil, code, msg)
		require.Equal(t, enc, wire.AppendFailure(nil, wire.Failure{Code: wire.FailureCode(code), Message: msg}))
		bad := enc
		if rng.IntN(2) == 0 {
			bad = mutate(rng, enc[:min(len(enc), 6)])
		}
		wantCode, wantMsg, specErr := specDecodeFailure(bad)
		got, pkgErr := wire.DecodeFailure(bad)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			// A code this version does not define is passed up as it is.
			require.Equal(t, wire.Failure{Code: wire.FailureCode(wantCode), Message: wantMsg}, got)
		}
	}
	_, err := wire.DecodeFailure(specAppendFailure(nil, 2, string(make([]byte, wire.MaxFailureMessage+1))))
	assert.ErrorIs(t, err, wire.ErrMalformed, "message above MaxFailureMessage")
}

func TestSpecReplyRejections(t *testing.T) {
	for name, r := range map[string]specReply{
		"accepted with version 0": {version: 0, reason: 0},
		"refused with a version":  {version: 3, reason: 6},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := wire.DecodeReply(specAppendReply(r))
			assert.ErrorIs(t, err, wire.ErrMalformed)
		})
	}
	assert.Panics(t, func() { wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted}) })
	// A refusal is written with version 0 whatever the Reply holds.
	assert.Equal(t, specAppendReply(specReply{reason: 7}),
		wire.AppendReply(nil, &wire.Reply{Version: 3, Reason: wire.Busy}))
	// A reason this version does not know is passed up as it is.
	rep, err := wire.DecodeReply(specAppendReply(specReply{reason: 200, message: "later"}))
	require.NoError(t, err)
	assert.Equal(t, wire.RefuseReason(200), rep.Reason)

	// ReadHandshake reads one message and nothing past it.
	hello := specAppendHello(specHello{min: 3, max: 3, cluster: "c", node: "n1"})
	r := bytes.NewReader(append(append([]byte(nil), hello...), 0xAA))
	got, err := wire.ReadHandshake(r, make([]byte, wire.MaxHandshakeSize))
	require.NoError(t, err)
	assert.Equal(t, hello, got)
	assert.Equal(t, 1, r.Len())
	_, err = wire.ReadHandshake(bytes.NewReader(nil), make([]byte, wire.MaxHandshakeSize))
	assert.ErrorIs(t, err, io.EOF)

	_, err = wire.AppendHello(nil, &wire.Hello{MinVersion: 3, MaxVersion: 3, Node: string(make([]byte, 256))})
	assert.Error(t, err, "a name above MaxNameLength")
	_, err = wire.AppendHello(nil, &wire.Hello{MinVersion: 0, MaxVersion: 3, Node: "n"})
	assert.Error(t, err, "min_ver 0")
}

// The encoders refuse to write what the decoders would reject.
func TestSpecEncodersRefuse(t *testing.T) {
	for name, f := range map[string]func(){
		"kind 9":              func() { wire.AppendFrameHeader(nil, 9, 0) },
		"batch with a stream": func() { wire.AppendFrameHeader(nil, wire.FrameBatch, 1, []byte{1}) },
		"more without one":    func() { wire.AppendFrameHeader(nil, wire.FrameLargeMore, 0, []byte{1}) },
		"stream 2^24":         func() { wire.AppendFrameHeader(nil, wire.FrameGrant, wire.MaxStream+1) },
		"ping with payload":   func() { wire.AppendFrameHeader(nil, wire.FramePing, 0, []byte{1}) },
		"request and response": func() {
			wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagExpectsResponse | wire.FlagResponse})
		},
		"cancel with payload": func() { wire.AppendHeader(nil, &wire.Header{Flags: wire.FlagCancel, PayloadLength: 1}) },
		"bad params":          func() { wire.AppendHeader(nil, &wire.Header{Params: []byte{5, 'a'}}) },
		"chunk above 64 KiB":  func() { wire.AppendStreamChunkHeader(nil, wire.MaxStreamChunk+1) },
		"negative chunk":      func() { wire.AppendStreamChunkHeader(nil, -1) },
		"refuse with 0":       func() { wire.AppendStreamRefuse(nil, wire.StreamAccepted) },
	} {
		assert.Panics(t, f, name)
	}
}

// The table of kinds in doc.go: who sends each.
func TestSpecFrameKindSides(t *testing.T) {
	for kind := range 10 {
		k := wire.FrameKind(kind)
		assert.Equal(t, kind <= 8 && kind != 7, k.FromInitiator(), "%v from the initiator", k)
		assert.Equal(t, kind <= 8 && kind != 4, k.FromAcceptor(), "%v from the acceptor", k)
	}
	assert.Equal(t, 4135, wire.MaxHeaderSize, "1+10+5+8+8+2+4096+5")

	// A FileResult's length is bounded before anything is allocated.
	_, err := wire.ReadFileResult(bytes.NewReader([]byte{0xff, 0xff}))
	assert.ErrorIs(t, err, wire.ErrMalformed)
}

// Constants doc.go gives as numbers that no decoder above pins.
func TestSpecConstants(t *testing.T) {
	assert.EqualValues(t, 12, wire.FrameHeaderSize)
	assert.EqualValues(t, 1<<24-1, wire.MaxStream)
	assert.EqualValues(t, 256<<10, wire.DefaultMaxFramePayload)
	assert.EqualValues(t, 1024, wire.MaxBatchMessages)
	assert.EqualValues(t, 255, wire.MaxNameLength)
	assert.EqualValues(t, 65536, wire.MaxStreamChunk)
	assert.EqualValues(t, 4, wire.StreamChunkHeaderSize)
	assert.EqualValues(t, 4, wire.FileTrailerSize)
	assert.EqualValues(t, specMaxFileHeader, wire.MaxFileHeaderSize)
	assert.EqualValues(t, 3, wire.Version3)
	assert.EqualValues(t, 3, wire.MinVersion)
	assert.EqualValues(t, 3, wire.MaxVersion)
	assert.Equal(t, time.Second, wire.KeepaliveInterval)

	// The numbered lists of doc.go.
	kinds := []wire.FrameKind{wire.FrameBatch, wire.FrameLargeBegin, wire.FrameLargeMore, wire.FrameLargeCancel,
		wire.FramePing, wire.FrameGrant, wire.FrameRefuse, wire.FrameBeat, wire.FrameBatchS2}
	for i, k := range kinds {
		assert.EqualValues(t, i, k, "%v", k)
	}
	failures := []wire.FailureCode{wire.FailureUnknown, wire.FailureUnknownVerb, wire.FailureHandlerError,
		wire.FailureExpired, wire.FailureOverloaded, wire.FailureTooLarge, wire.FailureCanceled,
		wire.FailureCorrupt, wire.FailureIncomplete}
	for i, c := range failures {
		assert.EqualValues(t, i, c, "%v", c)
	}
	reasons := []wire.RefuseReason{wire.Accepted, wire.UnsupportedVersion, wire.WrongCluster, wire.UnknownNode,
		wire.IdentityMismatch, wire.BadLane, wire.Refused, wire.Busy}
	for i, r := range reasons {
		assert.EqualValues(t, i, r, "%v", r)
	}
	flags := []wire.MessageFlags{wire.FlagExpectsResponse, wire.FlagResponse, wire.FlagFailure,
		wire.FlagParams, wire.FlagTTL, wire.FlagCancel}
	for i, f := range flags {
		assert.EqualValues(t, 1<<i, f, "flag bit %d", i)
	}
	assert.EqualValues(t, 1, wire.CapBatchS2)
	assert.EqualValues(t, 2, wire.CapEagerResponses)
	assert.EqualValues(t, 4, wire.CapFileFlags)
	assert.EqualValues(t, 1, wire.FileUnchecked)
	assert.EqualValues(t, 0x494E4F44, wire.Magic)
}
