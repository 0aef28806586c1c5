package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// FrameHeaderSize is the size in bytes of a frame header.
const FrameHeaderSize = 12

// DefaultMaxFramePayload is the default largest frame payload a reader
// accepts, in bytes: 256 KiB. Writers never produce larger frames.
const DefaultMaxFramePayload = 256 << 10

// MaxStream is the largest stream number a frame may carry (24 bits).
const MaxStream = 1<<24 - 1

// FrameKind says what a frame's payload holds. It is part of the wire format.
type FrameKind uint8

const (
	// FrameBatch holds one or more whole encoded messages, back to back.
	FrameBatch FrameKind = 0
	// FrameLargeBegin holds the header of one large message followed by the
	// first bytes of its payload. Its Stream names the message until its
	// last byte has arrived.
	FrameLargeBegin FrameKind = 1
	// FrameLargeMore holds further payload bytes of the large message
	// named by its Stream.
	FrameLargeMore FrameKind = 2
)

func (k FrameKind) valid() bool { return k <= FrameLargeMore }

// castagnoli is the CRC32C table; hash/crc32 uses the CPU's instruction
// (SSE4.2 on amd64, CRC32 on arm64) for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FrameHeader is a decoded frame header.
type FrameHeader struct {
	Length   uint32    // payload length in bytes
	Kind     FrameKind // what the payload holds
	Stream   uint32    // large-message stream (24 bits); 0 for FrameBatch
	Checksum uint32    // CRC32C of header bytes 0..7 followed by the payload
}

// AppendFrameHeader appends the header of a frame whose payload is the
// concatenation of parts, computing its checksum over them. The parts are
// not appended: the caller writes them after the header (typically with one
// vectored write), so a payload is never copied to be framed.
//
// kind must be a defined FrameKind, stream at most MaxStream (and 0 for
// FrameBatch) and the parts at most 1<<32-1 bytes together: any other
// header could not be read back, so AppendFrameHeader panics rather than
// write it. Keeping frames within the reader's limit (DefaultMaxFramePayload
// unless configured otherwise) is the caller's duty.
func AppendFrameHeader(dst []byte, kind FrameKind, stream uint32, parts ...[]byte) []byte {
	if !kind.valid() {
		panic(fmt.Sprintf("wire: AppendFrameHeader: unknown frame kind %d", kind))
	}
	if stream > MaxStream || (kind == FrameBatch && stream != 0) {
		panic(fmt.Sprintf("wire: AppendFrameHeader: stream %d not allowed for frame kind %d", stream, kind))
	}
	var n uint64
	for _, p := range parts {
		n += uint64(len(p))
	}
	if n > math.MaxUint32 {
		panic(fmt.Sprintf("wire: AppendFrameHeader: payload of %d bytes does not fit a frame", n))
	}
	h := frameHeaderStart(uint32(n), kind, stream)
	crc := headerCRC(h)
	for _, p := range parts {
		crc = crc32.Update(crc, castagnoli, p)
	}
	dst = append(dst, h[:]...)
	return binary.BigEndian.AppendUint32(dst, crc)
}

// frameHeaderStart returns header bytes 0..7: length, kind and stream.
func frameHeaderStart(length uint32, kind FrameKind, stream uint32) [8]byte {
	var h [8]byte
	binary.BigEndian.PutUint32(h[0:4], length)
	h[4] = byte(kind)
	h[5], h[6], h[7] = byte(stream>>16), byte(stream>>8), byte(stream)
	return h
}

// headerCRC returns the CRC32C of header bytes 0..7, to be continued over
// the payload with crc32.Update. It runs the table by hand because a stack
// array handed to hash/crc32 escapes to the heap (the update function is
// chosen at run time), and framing must not allocate.
func headerCRC(h [8]byte) uint32 {
	crc := ^uint32(0)
	for _, b := range h {
		crc = castagnoli[byte(crc)^b] ^ crc>>8
	}
	return ^crc
}

// ParseFrameHeader decodes a frame header from the first FrameHeaderSize
// bytes of b. It rejects, before anything is allocated for the payload, a
// payload longer than maxPayload and an unknown kind.
func ParseFrameHeader(b []byte, maxPayload uint32) (FrameHeader, error) {
	if len(b) < FrameHeaderSize {
		return FrameHeader{}, ErrTruncated
	}
	h := FrameHeader{
		Length:   binary.BigEndian.Uint32(b[0:4]),
		Kind:     FrameKind(b[4]),
		Stream:   uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]),
		Checksum: binary.BigEndian.Uint32(b[8:12]),
	}
	if !h.Kind.valid() {
		return FrameHeader{}, fmt.Errorf("%w: unknown frame kind %d", ErrMalformed, h.Kind)
	}
	if h.Kind == FrameBatch && h.Stream != 0 {
		return FrameHeader{}, fmt.Errorf("%w: batch frame with stream %d", ErrMalformed, h.Stream)
	}
	if h.Length > maxPayload {
		return FrameHeader{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, h.Length, maxPayload)
	}
	return h, nil
}

// Verify checks payload against the header's length and checksum. It
// returns ErrTruncated when payload is not exactly Length bytes long and
// ErrChecksum when the checksum does not match.
func (h FrameHeader) Verify(payload []byte) error {
	// Compared in 64 bits: a payload of 4 GiB + Length bytes must not pass.
	if uint64(len(payload)) != uint64(h.Length) {
		return ErrTruncated
	}
	crc := headerCRC(frameHeaderStart(h.Length, h.Kind, h.Stream))
	if crc32.Update(crc, castagnoli, payload) != h.Checksum {
		return ErrChecksum
	}
	return nil
}
