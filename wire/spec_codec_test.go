package wire_test

// This file is a second implementation of the format, written from doc.go
// alone; spec_test.go and spec_stream_test.go cross-check the package
// against it: what one encodes the other decodes to the same values, both
// refuse the same bytes, and the examples drawn in doc.go are the bytes
// both write. If they fail after a change to the package, either doc.go no
// longer describes the format or the package no longer speaks it.

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

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
	flags     uint64 // written only when not 0 (and CapFileFlags agreed)
}

// specCapFileFlags and specFileUnchecked are bit 2 of the handshake's
// capabilities and bit 0 of a file header's flags.
const (
	specCapFileFlags  = 1 << 2
	specFileUnchecked = 1 << 0
)

func specAppendFileHeader(f specFile) []byte {
	body := specAppendUvarint(nil, f.verb)
	body = specAppendUvarint(body, f.id)
	body = binary.BigEndian.AppendUint64(body, uint64(f.createdAt))
	body = specAppendUvarint(body, f.ttl)
	body = specAppendUvarint(body, f.length)
	if f.flags != 0 {
		body = specAppendUvarint(body, f.flags)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

// specDecodeFileHeader decodes a file header read on a connection whose
// handshake agreed CapFileFlags or not (flagsAgreed).
func specDecodeFileHeader(b []byte, flagsAgreed bool) (specFile, error) {
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
	if r.err == nil && flagsAgreed && len(r.b) > 0 {
		f.flags = r.uvarint()
	}
	if r.err != nil || len(r.b) != 0 || f.verb > 1<<32-1 || f.ttl > specMaxTTL || f.flags&^specFileUnchecked != 0 {
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
