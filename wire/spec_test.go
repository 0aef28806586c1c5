package wire_test

// This file is a second implementation of the format, written from doc.go
// alone, and a cross-check of the package against it: what one encodes the
// other decodes to the same values, both refuse the same bytes, and the
// examples drawn in doc.go are the bytes both write. If it fails after a
// change to the package, either doc.go no longer describes the format or
// the package no longer speaks it.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/s2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

var specCRC = crc32.MakeTable(crc32.Castagnoli)

// The bounds doc.go gives, as numbers: the decoders here use these, so
// that a change to the package's constants shows as a disagreement.
const (
	specMaxHandshake      = 1024
	specMaxParams         = 4096
	specMaxTTL            = 1 << 62
	specMaxFailureMessage = 1024
	specMaxFileHeader     = 64
	specMaxBatchS2Prefix  = 5
)

// ---- integers ------------------------------------------------------------

func specAppendUvarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// specUvarint reads an LEB128 uvarint that must be the shortest encoding of
// its value and fit in 64 bits.
func specUvarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b); i++ {
		c := b[i]
		if i == 9 && c > 1 || i == 10 {
			return 0, 0, wire.ErrMalformed
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, 0, wire.ErrMalformed
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, wire.ErrTruncated
}

// specReader walks a byte slice; the first failure sticks.
type specReader struct {
	b   []byte
	err error
}

func (r *specReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *specReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail(wire.ErrTruncated)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *specReader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *specReader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *specReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n, err := specUvarint(r.b)
	if err != nil {
		r.fail(err)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// ---- handshake -------------------------------------------------------------

const specMagic = 0x494E4F44

type specHello struct {
	min, max, lane uint8
	caps           uint32
	cluster, node  string
}

type specReply struct {
	version, reason uint8
	caps            uint32
	message         string
}

func specSeal(body []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, specMagic)
	out = binary.BigEndian.AppendUint16(out, uint16(len(body)+4))
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, specCRC))
}

func specAppendHello(h specHello) []byte {
	body := []byte{h.min, h.max, h.lane}
	body = binary.BigEndian.AppendUint32(body, h.caps)
	body = append(append(body, byte(len(h.cluster))), h.cluster...)
	body = append(append(body, byte(len(h.node))), h.node...)
	return specSeal(body)
}

func specAppendReply(r specReply) []byte {
	body := []byte{r.version, r.reason}
	body = binary.BigEndian.AppendUint32(body, r.caps)
	body = append(append(body, byte(len(r.message))), r.message...)
	return specSeal(body)
}

// specOpen checks a whole handshake message and returns the fields
// between body_len and the checksum.
func specOpen(b []byte) ([]byte, error) {
	if len(b) < 6 {
		return nil, wire.ErrTruncated
	}
	if binary.BigEndian.Uint32(b) != specMagic {
		return nil, wire.ErrBadMagic
	}
	bodyLen := int(binary.BigEndian.Uint16(b[4:]))
	if 6+bodyLen > specMaxHandshake {
		return nil, wire.ErrHandshakeTooLarge
	}
	if bodyLen < 4 {
		return nil, wire.ErrMalformed
	}
	if len(b) != 6+bodyLen {
		return nil, wire.ErrTruncated
	}
	end := len(b) - 4
	if crc32.Checksum(b[:end], specCRC) != binary.BigEndian.Uint32(b[end:]) {
		return nil, wire.ErrChecksum
	}
	return b[6:end], nil
}

func specDecodeHello(b []byte) (specHello, error) {
	body, err := specOpen(b)
	if err != nil {
		return specHello{}, err
	}
	r := &specReader{b: body}
	var h specHello
	h.min, h.max, h.lane = r.u8(), r.u8(), r.u8()
	if c := r.bytes(4); c != nil {
		h.caps = binary.BigEndian.Uint32(c)
	}
	h.cluster = string(r.bytes(int(r.u8())))
	h.node = string(r.bytes(int(r.u8())))
	switch {
	case r.err != nil || len(r.b) != 0:
		return specHello{}, wire.ErrMalformed // lengths do not add up
	case h.min == 0 || h.min > h.max:
		return specHello{}, wire.ErrMalformed
	}
	return h, nil
}

func specDecodeReply(b []byte) (specReply, error) {
	body, err := specOpen(b)
	if err != nil {
		return specReply{}, err
	}
	r := &specReader{b: body}
	var rep specReply
	rep.version, rep.reason = r.u8(), r.u8()
	if c := r.bytes(4); c != nil {
		rep.caps = binary.BigEndian.Uint32(c)
	}
	rep.message = string(r.bytes(int(r.u8())))
	switch {
	case r.err != nil || len(r.b) != 0:
		return specReply{}, wire.ErrMalformed
	case (rep.version == 0) != (rep.reason != 0):
		return specReply{}, wire.ErrMalformed // version 0 iff refused
	}
	return rep, nil
}

// ---- frames ----------------------------------------------------------------

func specHasStream(kind uint8) bool {
	return kind == 1 || kind == 2 || kind == 3 || kind == 5 || kind == 6
}
func specEmpty(kind uint8) bool { return kind == 4 || kind == 5 || kind == 7 }

func specAppendFrame(dst []byte, kind uint8, stream uint32, payload []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, kind, byte(stream>>16), byte(stream>>8), byte(stream))
	crc := crc32.Update(crc32.Checksum(dst[start:start+8], specCRC), specCRC, payload)
	dst = binary.BigEndian.AppendUint32(dst, crc)
	return append(dst, payload...)
}

type specFrameHeader struct {
	length uint32
	kind   uint8
	stream uint32
	crc    uint32
}

func specParseFrameHeader(b []byte, limit uint32) (specFrameHeader, error) {
	if len(b) < 12 {
		return specFrameHeader{}, wire.ErrTruncated
	}
	h := specFrameHeader{
		length: binary.BigEndian.Uint32(b),
		kind:   b[4],
		stream: uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]),
		crc:    binary.BigEndian.Uint32(b[8:]),
	}
	switch {
	case h.kind > 8:
		return specFrameHeader{}, wire.ErrMalformed
	case specHasStream(h.kind) != (h.stream != 0):
		return specFrameHeader{}, wire.ErrMalformed
	case specEmpty(h.kind) && h.length != 0:
		return specFrameHeader{}, wire.ErrMalformed
	case h.length > limit:
		return specFrameHeader{}, wire.ErrFrameTooLarge
	}
	return h, nil
}

// ---- message header --------------------------------------------------------

type specMsg struct {
	flags      uint8
	id         uint64
	verb       uint64
	createdAt  int64
	ttl        uint64 // only with FlagTTL
	params     []byte // only with FlagParams
	payloadLen uint64
}

func specAppendMsg(dst []byte, m specMsg) []byte {
	dst = append(dst, m.flags)
	dst = specAppendUvarint(dst, m.id)
	dst = specAppendUvarint(dst, m.verb)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.createdAt))
	if m.flags&0x10 != 0 {
		dst = binary.BigEndian.AppendUint64(dst, m.ttl)
	}
	if m.flags&0x08 != 0 {
		dst = specAppendUvarint(dst, uint64(len(m.params)))
		dst = append(dst, m.params...)
	}
	return specAppendUvarint(dst, m.payloadLen)
}

func specDecodeMsg(b []byte, maxPayload uint32) (specMsg, int, error) {
	r := &specReader{b: b}
	var m specMsg
	m.flags = r.u8()
	m.id = r.uvarint()
	m.verb = r.uvarint()
	m.createdAt = int64(r.u64())
	if m.flags&0x10 != 0 {
		m.ttl = r.u64()
	}
	if m.flags&0x08 != 0 {
		n := r.uvarint()
		if r.err == nil && (n < 1 || n > specMaxParams) {
			r.fail(wire.ErrMalformed)
		}
		m.params = r.bytes(int(n))
		if _, err := specParams(m.params); r.err == nil && err != nil {
			r.fail(err)
		}
	}
	m.payloadLen = r.uvarint()
	kinds := 0
	for _, bit := range []uint8{0x01, 0x02, 0x20} {
		if m.flags&bit != 0 {
			kinds++
		}
	}
	switch {
	case r.err != nil:
		return specMsg{}, 0, r.err
	case m.flags&0xC0 != 0, kinds > 1, m.flags&0x04 != 0 && m.flags&0x02 == 0:
		return specMsg{}, 0, wire.ErrMalformed
	case m.verb > 1<<32-1:
		return specMsg{}, 0, wire.ErrMalformed
	case m.flags&0x10 != 0 && (m.ttl < 1 || m.ttl > specMaxTTL):
		return specMsg{}, 0, wire.ErrMalformed
	case m.payloadLen > uint64(maxPayload): // which is below 2^32
		return specMsg{}, 0, wire.ErrMessageTooLarge
	case m.flags&0x20 != 0 && m.payloadLen != 0:
		return specMsg{}, 0, wire.ErrMalformed
	}
	return m, len(b) - len(r.b), nil
}

// specParams reads a parameter block, which its pairs must fill exactly.
func specParams(block []byte) ([][2]string, error) {
	r := &specReader{b: block}
	var pairs [][2]string
	for r.err == nil && len(r.b) > 0 {
		k := r.bytes(int(r.uvarint()))
		v := r.bytes(int(r.uvarint()))
		pairs = append(pairs, [2]string{string(k), string(v)})
	}
	if r.err != nil {
		return nil, wire.ErrMalformed
	}
	return pairs, nil
}

// ---- failure, streams, files ------------------------------------------------

func specAppendFailure(dst []byte, code uint8, msg string) []byte {
	dst = append(dst, code)
	dst = specAppendUvarint(dst, uint64(len(msg)))
	return append(dst, msg...)
}

func specDecodeFailure(b []byte) (uint8, string, error) {
	r := &specReader{b: b}
	code := r.u8()
	n := r.uvarint()
	if r.err == nil && n > specMaxFailureMessage {
		return 0, "", wire.ErrMalformed
	}
	msg := r.bytes(int(n))
	if r.err != nil || len(r.b) != 0 {
		return 0, "", wire.ErrMalformed
	}
	return code, string(msg), nil
}

func specDecodeStreamOpen(b []byte) (uint32, int, error) {
	if len(b) > 5 {
		b = b[:5]
	}
	v, n, err := specUvarint(b)
	switch {
	case errors.Is(err, wire.ErrTruncated) && len(b) == 5:
		return 0, 0, wire.ErrMalformed // longer than MaxStreamOpenSize
	case err != nil:
		return 0, 0, err
	case v > 1<<32-1:
		return 0, 0, wire.ErrMalformed
	}
	return uint32(v), n, nil
}

type specFile struct {
	verb, id  uint64
	createdAt int64
	ttl       uint64
	length    uint64
}

func specAppendFileHeader(f specFile) []byte {
	body := specAppendUvarint(nil, f.verb)
	body = specAppendUvarint(body, f.id)
	body = binary.BigEndian.AppendUint64(body, uint64(f.createdAt))
	body = specAppendUvarint(body, f.ttl)
	body = specAppendUvarint(body, f.length)
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

func specDecodeFileHeader(b []byte) (specFile, error) {
	if len(b) < 2 {
		return specFile{}, wire.ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > specMaxFileHeader-2 {
		return specFile{}, wire.ErrMalformed
	}
	if len(b) != 2+n { // DecodeFileHeader takes one whole header
		return specFile{}, wire.ErrTruncated
	}
	r := &specReader{b: b[2 : 2+n]}
	f := specFile{verb: r.uvarint(), id: r.uvarint(), createdAt: int64(r.u64()), ttl: r.uvarint(), length: r.uvarint()}
	if r.err != nil || len(r.b) != 0 || f.verb > 1<<32-1 || f.ttl > specMaxTTL {
		return specFile{}, wire.ErrMalformed
	}
	return f, nil
}

// ---- S2 blocks ----------------------------------------------------------------

// specAppendS2Literals writes a Snappy block of literals alone, which doc.go
// says any reader takes.
func specAppendS2Literals(dst, batch []byte) []byte {
	dst = specAppendUvarint(dst, uint64(len(batch)))
	for len(batch) > 0 {
		n := min(len(batch), 60)
		dst = append(dst, byte(n-1)<<2)
		dst = append(dst, batch[:n]...)
		batch = batch[n:]
	}
	return dst
}

func specS2Len(b []byte, limit uint32) (int, error) {
	v, _, err := specUvarint(b[:min(len(b), specMaxBatchS2Prefix)])
	switch {
	case errors.Is(err, wire.ErrTruncated) && len(b) >= specMaxBatchS2Prefix:
		return 0, wire.ErrFrameTooLarge
	case err != nil:
		return 0, err
	case v == 0:
		return 0, wire.ErrMalformed
	case v > uint64(limit):
		return 0, wire.ErrFrameTooLarge
	}
	return int(v), nil
}

func specMaxS2Block(plainLen int) int {
	return len(specAppendUvarint(nil, uint64(plainLen))) + 6*plainLen
}

// ---- cross-checks -------------------------------------------------------------

var specSentinels = []error{
	wire.ErrTruncated, wire.ErrMalformed, wire.ErrChecksum, wire.ErrBadMagic,
	wire.ErrFrameTooLarge, wire.ErrMessageTooLarge, wire.ErrHandshakeTooLarge,
}

// specErrName names the sentinel err wraps, "nil" for none. doc.go does
// not say which of ErrTruncated and ErrMalformed a decoder returns for
// bytes that end early inside a length-delimited item, only that both
// close the connection, so they are one name here.
func specErrName(err error) string {
	if err == nil {
		return "nil"
	}
	if errors.Is(err, wire.ErrTruncated) {
		return "malformed or truncated"
	}
	for _, s := range specSentinels[1:] {
		if errors.Is(err, s) {
			if s == wire.ErrMalformed {
				return "malformed or truncated"
			}
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

// randUint returns values spread over all varint lengths up to bits.
func randUint(rng *rand.Rand, bits int) uint64 {
	v := rng.Uint64() >> (64 - 1 - rng.IntN(bits))
	return v
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

func TestSpecStreams(t *testing.T) {
	// The example drawn in doc.go.
	opener := []byte{0x14, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0}
	var b []byte
	b = wire.AppendStreamOpen(b, 20)
	b = append(wire.AppendStreamChunkHeader(b, 5), "hello"...)
	b = wire.AppendStreamChunkHeader(b, 0)
	assert.Equal(t, opener, b)
	acceptor := []byte{0, 0, 0, 0, 2, 'o', 'k', 0, 0, 0, 0}
	b = wire.AppendStreamAccept(nil)
	b = append(wire.AppendStreamChunkHeader(b, 2), "ok"...)
	assert.Equal(t, acceptor, wire.AppendStreamChunkHeader(b, 0))

	assert.Equal(t, []byte{4}, wire.AppendStreamRefuse(nil, wire.FailureOverloaded))
	code, refused := wire.ParseStreamStatus(200)
	assert.True(t, refused)
	assert.Equal(t, wire.FailureCode(200), code, "unknown codes are passed up as they are")
	_, refused = wire.ParseStreamStatus(0)
	assert.False(t, refused)

	rng := rand.New(rand.NewPCG(9, 10))
	for range 2000 {
		verb := uint32(randUint(rng, 32))
		enc := specAppendUvarint(nil, uint64(verb))
		require.Equal(t, enc, wire.AppendStreamOpen(nil, verb))
		bad := mutate(rng, enc)
		want, wantN, specErr := specDecodeStreamOpen(bad)
		got, gotN, pkgErr := wire.DecodeStreamOpen(bad)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			require.Equal(t, [2]int{int(want), wantN}, [2]int{int(got), gotN})
			read, err := wire.ReadStreamOpen(bytes.NewReader(bad))
			require.NoError(t, err)
			require.Equal(t, want, read)
		}

		n := rng.IntN(wire.MaxStreamChunk + 2)
		hdr := binary.BigEndian.AppendUint32(nil, uint32(n))
		gotLen, err := wire.ParseStreamChunkHeader(hdr)
		if n > wire.MaxStreamChunk {
			require.ErrorIs(t, err, wire.ErrMalformed)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, n, gotLen)
		require.Equal(t, hdr, wire.AppendStreamChunkHeader(nil, n))
	}
	_, err := wire.ParseStreamChunkHeader([]byte{0xff, 0xff, 0xff, 0xff})
	assert.ErrorIs(t, err, wire.ErrMalformed)
	_, _, err = wire.DecodeStreamOpen([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	assert.ErrorIs(t, err, wire.ErrMalformed, "longer than MaxStreamOpenSize")
}

func TestSpecFileTransfer(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	buf := make([]byte, wire.MaxFileHeaderSize)
	for range 2000 {
		f := specFile{verb: randUint(rng, 32), id: randUint(rng, 64), createdAt: int64(rng.Uint64()),
			ttl: randUint(rng, 63) % (wire.MaxTTL + 1), length: randUint(rng, 64)}
		enc := specAppendFileHeader(f)
		require.LessOrEqual(t, len(enc), wire.MaxFileHeaderSize)
		pkg := wire.AppendFileHeader(nil, &wire.FileHeader{Verb: uint32(f.verb), ID: f.id,
			CreatedAt: f.createdAt, TTL: int64(f.ttl), Length: f.length})
		require.Equal(t, enc, pkg)
		bad := mutate(rng, enc)
		if rng.IntN(2) == 0 && len(bad) >= 2 {
			binary.BigEndian.PutUint16(bad, uint16(len(bad)-2))
		}
		want, specErr := specDecodeFileHeader(bad)
		got, pkgErr := wire.DecodeFileHeader(bad)
		require.Equal(t, specErrName(specErr), specErrName(pkgErr), "% x", bad)
		if specErr == nil {
			require.Equal(t, want, specFile{uint64(got.Verb), got.ID, got.CreatedAt, uint64(got.TTL), got.Length})
			read, err := wire.ReadFileHeader(bytes.NewReader(bad), buf)
			require.NoError(t, err)
			require.Equal(t, got, read)
		}
	}
	_, err := wire.ReadFileHeader(bytes.NewReader([]byte{0, 63}), buf)
	assert.ErrorIs(t, err, wire.ErrMalformed, "header_len above 62")

	// A FileResult: result_len (2) and a Failure; empty is success.
	assert.Equal(t, []byte{0, 0}, wire.AppendFileResult(nil, nil))
	res := append([]byte{0, 4}, specAppendFailure(nil, 7, "ab")...)
	assert.Equal(t, res, wire.AppendFileResult(nil, &wire.Failure{Code: wire.FailureCorrupt, Message: "ab"}))
	fail, err := wire.ReadFileResult(bytes.NewReader(res))
	require.NoError(t, err)
	assert.Equal(t, &wire.Failure{Code: wire.FailureCorrupt, Message: "ab"}, fail)
	fail, err = wire.ReadFileResult(bytes.NewReader([]byte{0, 0}))
	require.NoError(t, err)
	assert.Nil(t, fail)
}

func TestSpecBatchS2(t *testing.T) {
	// The example drawn in doc.go.
	block := []byte{0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x03}
	n, err := wire.BatchS2Len(block, wire.DefaultMaxFramePayload)
	require.NoError(t, err)
	dst := make([]byte, n)
	require.NoError(t, wire.DecodeBatchS2(dst, block))
	assert.Equal(t, "abcabcabcabc", string(dst))

	rng := rand.New(rand.NewPCG(13, 14))
	for range 300 {
		batch := make([]byte, 1+rng.IntN(3000))
		for i := range batch {
			batch[i] = "ab"[rng.IntN(2)] // compressible
		}
		// Ours, literals alone, is valid and within the bound.
		ours := specAppendS2Literals(nil, batch)
		require.LessOrEqual(t, len(ours), specMaxS2Block(len(batch)))
		require.Equal(t, specMaxS2Block(len(batch)), wire.MaxBatchS2Block(len(batch)))
		n, err := wire.BatchS2Len(ours, wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		dst := make([]byte, n)
		require.NoError(t, wire.DecodeBatchS2(dst, ours))
		require.Equal(t, batch, dst)
		// Theirs starts with plain_len as we read it.
		theirs := wire.AppendBatchS2(nil, batch)
		specN, err := specS2Len(theirs, wire.DefaultMaxFramePayload)
		require.NoError(t, err)
		require.Equal(t, len(batch), specN)
		require.LessOrEqual(t, len(theirs), specMaxS2Block(len(batch)))
		// A peer with the reference S2 library reads theirs, and writes
		// with a Snappy encoder what the package reads.
		plain, err := s2.Decode(nil, theirs)
		require.NoError(t, err)
		require.Equal(t, batch, plain)
		snappy := s2.EncodeSnappy(nil, batch)
		dst = make([]byte, len(batch))
		require.NoError(t, wire.DecodeBatchS2(dst, snappy))
		require.Equal(t, batch, dst)
	}

	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"plain_len 0":         {[]byte{0}, wire.ErrMalformed},
		"not minimal":         {[]byte{0x81, 0x00, 0, 0, 0}, wire.ErrMalformed},
		"above the limit":     {specAppendUvarint(nil, 1001), wire.ErrFrameTooLarge},
		"six bytes of prefix": {[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, wire.ErrFrameTooLarge},
		"truncated":           {[]byte{0x80}, wire.ErrTruncated},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := wire.BatchS2Len(tc.b, 1000)
			assert.ErrorIs(t, err, tc.want)
			_, err = specS2Len(tc.b, 1000)
			assert.ErrorIs(t, err, tc.want)
		})
	}
	// The costliest valid block: each byte a literal of its own whose
	// length takes four bytes more (tag 63), 6 bytes a byte, is at the
	// bound and decodes; a copy with a 4-byte offset yields a byte for 5.
	costly := specAppendUvarint(nil, 3)
	for _, c := range []byte("xyz") {
		costly = append(costly, 63<<2, 0, 0, 0, 0, c)
	}
	require.Len(t, costly, wire.MaxBatchS2Block(3))
	dst = make([]byte, 3)
	require.NoError(t, wire.DecodeBatchS2(dst, costly))
	assert.Equal(t, "xyz", string(dst))
	copy4 := append(specAppendUvarint(nil, 3), 1<<2, 'x', 'y', 0<<2|3, 2, 0, 0, 0)
	require.NoError(t, wire.DecodeBatchS2(dst, copy4))
	assert.Equal(t, "xyx", string(dst))

	// A block that decodes to fewer or more bytes than plain_len.
	for _, b := range [][]byte{{0x04, 0x08, 'a', 'b', 'c'}, {0x02, 0x08, 'a', 'b', 'c'}} {
		n, err := wire.BatchS2Len(b, 1000)
		require.NoError(t, err)
		assert.ErrorIs(t, wire.DecodeBatchS2(make([]byte, n), b), wire.ErrMalformed, "% x", b)
	}
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

// FuzzSpecDecoders feeds the same bytes to a decoder of the package and to
// its counterpart here (the first byte picks which) and wants the same
// verdict and, when both accept, the same values.
func FuzzSpecDecoders(f *testing.F) {
	f.Add(append([]byte{0}, specAppendHello(specHello{min: 3, max: 3, lane: 2, cluster: "c", node: "n1"})...))
	f.Add(append([]byte{1}, specAppendReply(specReply{reason: 7, message: "busy"})...))
	f.Add(append([]byte{2}, specAppendFrame(nil, 1, 7, nil)...))
	f.Add(append([]byte{3}, specAppendMsg(nil, specMsg{flags: 0x19, id: 1 << 40, verb: 300, ttl: 5, params: []byte{1, 'k', 1, 'v'}, payloadLen: 9})...))
	f.Add(append([]byte{4}, specAppendFailure(nil, 4, "full")...))
	f.Add([]byte{5, 0x80, 0x80, 0x80, 0x80, 0x0f})
	f.Add(append([]byte{6}, specAppendFileHeader(specFile{verb: 9, id: 1, ttl: 1 << 40, length: 1 << 33})...))
	f.Add([]byte{7, 0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x03})
	f.Add(append([]byte{7}, wire.AppendBatchS2(nil, bytes.Repeat([]byte("abcd"), 100))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		b := data[1:]
		check := func(specErr, pkgErr error, same func() bool) {
			t.Helper()
			if specErrName(specErr) != specErrName(pkgErr) {
				t.Fatalf("% x: spec %v, package %v", b, specErr, pkgErr)
			}
			if specErr == nil && !same() {
				t.Fatalf("% x: decoded differently", b)
			}
		}
		switch data[0] % 8 {
		case 0:
			want, specErr := specDecodeHello(b)
			got, pkgErr := wire.DecodeHello(b)
			check(specErr, pkgErr, func() bool {
				return want == specHello{got.MinVersion, got.MaxVersion, got.Lane, uint32(got.Capabilities), got.Cluster, got.Node}
			})
		case 1:
			want, specErr := specDecodeReply(b)
			got, pkgErr := wire.DecodeReply(b)
			check(specErr, pkgErr, func() bool {
				return want == specReply{got.Version, uint8(got.Reason), uint32(got.Capabilities), got.Message}
			})
		case 2:
			want, specErr := specParseFrameHeader(b, 1000)
			got, pkgErr := wire.ParseFrameHeader(b, 1000)
			check(specErr, pkgErr, func() bool {
				return want == specFrameHeader{got.Length, uint8(got.Kind), got.Stream, got.Checksum}
			})
		case 3:
			want, wantN, specErr := specDecodeMsg(b, 1<<20)
			got, gotN, pkgErr := wire.DecodeHeader(b, 1<<20)
			check(specErr, pkgErr, func() bool {
				return wantN == gotN && want.flags == uint8(got.Flags) && want.id == got.ID &&
					want.verb == uint64(got.Verb) && want.createdAt == got.CreatedAt &&
					want.ttl == uint64(got.TTL) && bytes.Equal(want.params, got.Params) &&
					want.payloadLen == uint64(got.PayloadLength)
			})
		case 4:
			code, msg, specErr := specDecodeFailure(b)
			got, pkgErr := wire.DecodeFailure(b)
			check(specErr, pkgErr, func() bool { return got == wire.Failure{Code: wire.FailureCode(code), Message: msg} })
		case 5:
			verb, n, specErr := specDecodeStreamOpen(b)
			gotVerb, gotN, pkgErr := wire.DecodeStreamOpen(b)
			check(specErr, pkgErr, func() bool { return verb == gotVerb && n == gotN })
		case 6:
			want, specErr := specDecodeFileHeader(b)
			got, pkgErr := wire.DecodeFileHeader(b)
			check(specErr, pkgErr, func() bool {
				return want == specFile{uint64(got.Verb), got.ID, got.CreatedAt, uint64(got.TTL), got.Length}
			})
		case 7:
			const limit = 1 << 16
			n, specErr := specS2Len(b, limit)
			gotN, pkgErr := wire.BatchS2Len(b, limit)
			check(specErr, pkgErr, func() bool { return n == gotN })
			if specErr != nil {
				return
			}
			// The package decodes exactly what the reference S2 decoder
			// decodes to plain_len bytes.
			ref, refErr := s2.Decode(nil, b)
			got := make([]byte, n)
			pkgErr = wire.DecodeBatchS2(got, b)
			if refOK := refErr == nil && len(ref) == n; refOK != (pkgErr == nil) {
				t.Fatalf("% x: reference S2 decoder %v (%d bytes), package %v", b, refErr, len(ref), pkgErr)
			}
			if pkgErr == nil && !bytes.Equal(ref, got) {
				t.Fatalf("% x: decoded differently from the reference", b)
			}
			if pkgErr == nil && len(b) > wire.MaxBatchS2Block(n) {
				t.Fatalf("% x: a block longer than MaxBatchS2Block decoded", b)
			}
		}
	})
}

// The Read* functions read one item and nothing past it, and refuse an
// oversized length from the length alone.
func TestSpecReadersStopAtTheirItem(t *testing.T) {
	tail := []byte{0xAA, 0xBB}
	file := specAppendFileHeader(specFile{verb: 1, id: 2, length: 3})
	r := bytes.NewReader(append(append([]byte(nil), file...), tail...))
	_, err := wire.ReadFileHeader(r, make([]byte, wire.MaxFileHeaderSize))
	require.NoError(t, err)
	assert.Equal(t, len(tail), r.Len())

	r = bytes.NewReader(append(specAppendUvarint(nil, 1<<31), tail...))
	verb, err := wire.ReadStreamOpen(r)
	require.NoError(t, err)
	assert.Equal(t, uint32(1<<31), verb)
	assert.Equal(t, len(tail), r.Len())

	// body_len 2000: refused after the 6 bytes that carry it.
	big := []byte{0x49, 0x4e, 0x4f, 0x44, 0x07, 0xd0}
	_, err = wire.ReadHandshake(io.MultiReader(bytes.NewReader(big), iotest.ErrReader(errors.New("read past body_len"))),
		make([]byte, wire.MaxHandshakeSize))
	assert.ErrorIs(t, err, wire.ErrHandshakeTooLarge)
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
}
