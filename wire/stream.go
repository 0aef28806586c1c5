package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// MaxStreamChunk is the largest chunk of stream data, in bytes: 64 KiB.
// It is part of the wire format: writers never write a larger chunk, and
// a reader closes a stream whose chunk header says more
// (ParseStreamChunkHeader rejects it).
const MaxStreamChunk = 64 << 10

// StreamChunkHeaderSize is the size in bytes of a chunk header: the
// chunk's length, big-endian. It is part of the wire format.
const StreamChunkHeaderSize = 4

// MaxStreamOpenSize bounds the opening of a stream, in bytes: a verb of
// at most 2^32-1 in its shortest uvarint encoding.
const MaxStreamOpenSize = binary.MaxVarintLen32

// StreamAccepted is the status byte with which the acceptor of a stream
// accepts it. Any other status byte refuses the stream and is the
// FailureCode saying why; FailureUnknown, being 0 too, cannot refuse one.
// It is part of the wire format.
const StreamAccepted = 0

// AppendStreamOpen appends the opening of a stream: its verb, as a
// uvarint.
func AppendStreamOpen(dst []byte, verb uint32) []byte {
	return binary.AppendUvarint(dst, uint64(verb))
}

// DecodeStreamOpen decodes the opening of a stream from the start of b and
// returns its verb with the number of bytes it took. It returns
// ErrTruncated when b ends inside the verb, and ErrMalformed (wrapped) for
// an encoding that is not the shortest, a verb above 2^32-1, or one longer
// than MaxStreamOpenSize bytes (looking no further than that).
func DecodeStreamOpen(b []byte) (verb uint32, n int, err error) {
	for i := range min(len(b), MaxStreamOpenSize) {
		if b[i] < 0x80 { // the last byte of the uvarint
			return decodeStreamVerb(b[:i+1])
		}
	}
	if len(b) >= MaxStreamOpenSize {
		return 0, 0, fmt.Errorf("%w: stream verb longer than %d bytes", ErrMalformed, MaxStreamOpenSize)
	}
	return 0, 0, ErrTruncated
}

// decodeStreamVerb decodes b, one whole uvarint of at most
// MaxStreamOpenSize bytes.
func decodeStreamVerb(b []byte) (uint32, int, error) {
	v, n, err := uvarint(b, 0)
	if err != nil {
		return 0, 0, err
	}
	if v > math.MaxUint32 {
		return 0, 0, fmt.Errorf("%w: stream verb %d out of range", ErrMalformed, v)
	}
	return uint32(v), n, nil
}

// ReadStreamOpen reads the opening of a stream from r, one byte at a time
// and never past the verb's last byte, and decodes it as DecodeStreamOpen
// does. It reads from r, unlike the other decoders, because the verb's
// length shows only in its bytes, and nothing may be read past it; it
// reads at most MaxStreamOpenSize bytes.
//
// It returns io.EOF when r ends before the first byte, ErrTruncated (which
// also satisfies errors.Is for io.ErrUnexpectedEOF) when r ends inside the
// verb, r's error when it fails, and DecodeStreamOpen's errors.
func ReadStreamOpen(r io.ByteReader) (uint32, error) {
	var buf [MaxStreamOpenSize]byte
	n := 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			if n == 0 {
				return 0, err
			}
			return 0, truncated(err, io.EOF, io.ErrUnexpectedEOF)
		}
		buf[n] = c
		n++
		if c < 0x80 || n == len(buf) { // the verb's last byte, or its bound
			break
		}
	}
	verb, _, err := DecodeStreamOpen(buf[:n])
	return verb, err
}

// AppendStreamAccept appends the status byte that accepts a stream,
// StreamAccepted.
func AppendStreamAccept(dst []byte) []byte { return append(dst, StreamAccepted) }

// AppendStreamRefuse appends the status byte that refuses a stream for
// code. code must not be FailureUnknown: its byte is StreamAccepted, and
// the opener would take the stream as accepted, so AppendStreamRefuse
// panics rather than write it.
func AppendStreamRefuse(dst []byte, code FailureCode) []byte {
	if code == FailureUnknown {
		panic("wire: AppendStreamRefuse: FailureUnknown would read as StreamAccepted")
	}
	return append(dst, byte(code))
}

// ParseStreamStatus decodes the acceptor's status byte: refused is false
// for StreamAccepted, and otherwise true with the code saying why. Every
// byte is valid; a code this version does not define is returned as it is
// (read it as FailureUnknown).
func ParseStreamStatus(status byte) (code FailureCode, refused bool) {
	return FailureCode(status), status != StreamAccepted
}

// AppendStreamChunkHeader appends the header of a chunk of n bytes of
// stream data; n == 0 makes the end marker. The n bytes are not appended:
// the caller writes them after the header.
//
// n must be from 0 to MaxStreamChunk: a reader would close the stream on
// any other, so AppendStreamChunkHeader panics rather than write it.
func AppendStreamChunkHeader(dst []byte, n int) []byte {
	if n < 0 || n > MaxStreamChunk {
		panic(fmt.Sprintf("wire: AppendStreamChunkHeader: chunk of %d bytes, limit %d", n, MaxStreamChunk))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// ParseStreamChunkHeader decodes a chunk header from the first
// StreamChunkHeaderSize bytes of b and returns the chunk's length, 0 for
// the end marker. It returns ErrTruncated when b is shorter, and
// ErrMalformed (wrapped) for a length above MaxStreamChunk, decided from
// the header alone, before the caller reads or allocates anything for the
// chunk. (Unlike a frame's limit, which each reader chooses and whose
// excess is ErrFrameTooLarge, the chunk limit is fixed by the format.)
func ParseStreamChunkHeader(b []byte) (int, error) {
	if len(b) < StreamChunkHeaderSize {
		return 0, ErrTruncated
	}
	n := binary.BigEndian.Uint32(b)
	if n > MaxStreamChunk {
		return 0, fmt.Errorf("%w: stream chunk of %d bytes, limit %d", ErrMalformed, n, MaxStreamChunk)
	}
	return int(n), nil
}
