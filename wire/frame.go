package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// FrameHeaderSize is the size in bytes of a frame header.
const FrameHeaderSize = 12

// DefaultMaxFramePayload is the default largest frame payload a reader
// accepts, in bytes: 256 KiB. Writers never produce larger frames.
const DefaultMaxFramePayload = 256 << 10

// MaxStream is the largest stream number a frame may carry (24 bits).
const MaxStream = 1<<24 - 1

// MaxBatchMessages is the most messages a FrameBatch may carry: a reader
// keeps some state per message it has read and not yet handled, and this
// bounds it per frame whatever the messages' sizes.
const MaxBatchMessages = 1024

// KeepaliveInterval is how often each side of an idle connection speaks:
// an initiator that has written nothing for this long sends a FramePing,
// and an acceptor sends a FrameBeat this often whatever it is doing. A
// side that hears nothing for several intervals may judge the connection
// dead. It is part of the wire format.
const KeepaliveInterval = time.Second

// FrameKind says what a frame's payload holds. It is part of the wire format.
//
// Most kinds travel both ways: the initiator of a connection (the side
// that dialled) writes its messages and the grants and refusals of large
// responses, and the acceptor writes back the responses, the grants and
// refusals of large messages, and its beats. Only FramePing is the
// initiator's alone and FrameBeat the acceptor's alone. Which side may
// send which kind on which lane is in the package doc's table; a reader
// refuses a kind from the wrong side or lane.
type FrameKind uint8

const (
	// FrameBatch holds one or more whole encoded messages, back to back:
	// from the initiator on the urgent and small lanes, and responses from
	// the acceptor on any lane.
	FrameBatch FrameKind = 0
	// FrameLargeBegin holds the header of one large message and nothing
	// else: it asks the other side for room for the message. Its Stream
	// names the message until its last byte has arrived or it is refused
	// or cancelled.
	FrameLargeBegin FrameKind = 1
	// FrameLargeMore holds further payload bytes of the large message
	// named by its Stream; it may be sent only once the other side
	// granted that stream (a large response needs no grant when the
	// handshake agreed CapEagerResponses).
	FrameLargeMore FrameKind = 2
	// FrameLargeCancel withdraws a large message begun on its Stream
	// before its last byte; the payload is a Failure saying why.
	FrameLargeCancel FrameKind = 3
	// FramePing is sent by an initiator with nothing else to write, so
	// the acceptor knows it is alive; its payload is empty.
	FramePing FrameKind = 4
	// FrameGrant grants the other side's large message begun on its
	// Stream: room for all of it is reserved, its parts may follow. The
	// acceptor grants large messages (large lane), the initiator large
	// responses (any lane). Its payload is empty.
	FrameGrant FrameKind = 5
	// FrameRefuse refuses the other side's large message begun on its
	// Stream, from the same side as FrameGrant; the payload is a Failure
	// saying why. The stream number is free again.
	FrameRefuse FrameKind = 6
	// FrameBeat is sent by the acceptor at a steady interval, whether or
	// not it is reading, so the initiator knows it is alive; its payload
	// is empty.
	FrameBeat FrameKind = 7
	// FrameBatchS2 holds a FrameBatch payload compressed as one S2 block
	// (see AppendBatchS2). It goes wherever a FrameBatch may, and only on
	// a connection whose handshake agreed CapBatchS2.
	FrameBatchS2 FrameKind = 8
)

func (k FrameKind) valid() bool { return k <= FrameBatchS2 }

// FromAcceptor reports whether frames of kind k may travel from the
// acceptor to the initiator (the back channel), on some lane: every
// defined kind but FramePing, since the acceptor sends responses, large
// ones included, as well as grants, refusals and beats. The lane, and
// CapBatchS2 for FrameBatchS2, are the reader's to check.
func (k FrameKind) FromAcceptor() bool { return k.valid() && k != FramePing }

// FromInitiator reports whether frames of kind k may travel from the
// initiator to the acceptor, on some lane: every defined kind but
// FrameBeat. The lane, and CapBatchS2 for FrameBatchS2, are the reader's
// to check.
func (k FrameKind) FromInitiator() bool { return k.valid() && k != FrameBeat }

// HasStream reports whether frames of kind k name a large-message stream
// (a Stream from 1 to MaxStream); the other kinds carry stream 0.
func (k FrameKind) HasStream() bool {
	switch k {
	case FrameLargeBegin, FrameLargeMore, FrameLargeCancel, FrameGrant, FrameRefuse:
		return true
	}
	return false
}

// Empty reports whether frames of kind k always have an empty payload.
func (k FrameKind) Empty() bool { return k == FramePing || k == FrameGrant || k == FrameBeat }

var frameKindNames = [...]string{"batch", "large-begin", "large-more", "large-cancel", "ping", "grant", "refuse", "beat", "batch-s2"}

func (k FrameKind) String() string {
	if k.valid() {
		return frameKindNames[k]
	}
	return fmt.Sprintf("FrameKind(%d)", uint8(k))
}

// castagnoli is the CRC32C table; hash/crc32 uses the CPU's instruction
// (SSE4.2 on amd64, CRC32 on arm64) for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FrameHeader is a decoded frame header.
type FrameHeader struct {
	Length   uint32    // payload length in bytes
	Kind     FrameKind // what the payload holds
	Stream   uint32    // large-message stream (24 bits, from 1); 0 unless Kind.HasStream
	Checksum uint32    // CRC32C of header bytes 0..7 followed by the payload
}

// AppendFrameHeader appends the header of a frame whose payload is the
// concatenation of parts, computing its checksum over them. The parts are
// not appended: the caller writes them after the header (typically with one
// vectored write), so a payload is never copied to be framed.
//
// kind must be a defined FrameKind, stream from 1 to MaxStream for kinds
// that name a stream and 0 for the others, the parts empty for kinds that
// carry nothing, and at most 1<<32-1 bytes together: any other
// header could not be read back, so AppendFrameHeader panics rather than
// write it. Keeping frames within the reader's limit (DefaultMaxFramePayload
// unless configured otherwise) is the caller's duty.
func AppendFrameHeader(dst []byte, kind FrameKind, stream uint32, parts ...[]byte) []byte {
	if !kind.valid() {
		panic(fmt.Sprintf("wire: AppendFrameHeader: unknown frame kind %d", kind))
	}
	if stream > MaxStream || kind.HasStream() != (stream != 0) {
		panic(fmt.Sprintf("wire: AppendFrameHeader: stream %d not allowed for frame kind %v", stream, kind))
	}
	var n uint64
	for _, p := range parts {
		n += uint64(len(p))
	}
	if n > math.MaxUint32 || n > 0 && kind.Empty() {
		panic(fmt.Sprintf("wire: AppendFrameHeader: payload of %d bytes does not fit a %v frame", n, kind))
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
// payload longer than maxPayload, an unknown kind, a stream number the
// kind does not allow and a payload on a kind that carries none. Which
// side may send the kind, and on which lane, is the reader's to check
// (FromAcceptor, FromInitiator and the package doc's table).
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
	if h.Kind.HasStream() != (h.Stream != 0) {
		return FrameHeader{}, fmt.Errorf("%w: %v frame with stream %d", ErrMalformed, h.Kind, h.Stream)
	}
	if h.Kind.Empty() && h.Length != 0 {
		return FrameHeader{}, fmt.Errorf("%w: %v frame with %d payload bytes", ErrMalformed, h.Kind, h.Length)
	}
	if h.Length > maxPayload {
		return FrameHeader{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, h.Length, maxPayload)
	}
	return h, nil
}

// HeaderChecksum returns the CRC32C of the header's bytes 0..7 (length,
// kind, stream), which the frame's checksum continues over its payload:
// crc32.Update(h.HeaderChecksum(), crc32.MakeTable(crc32.Castagnoli),
// payload) is h.Checksum when the frame is intact. It is for a reader
// that checks a payload it does not hold whole, read a piece at a time;
// Verify checks one it holds.
func (h FrameHeader) HeaderChecksum() uint32 {
	return headerCRC(frameHeaderStart(h.Length, h.Kind, h.Stream))
}

// Verify checks payload against the header's length and checksum. It
// returns ErrTruncated when payload is not exactly Length bytes long and
// ErrChecksum when the checksum does not match.
func (h FrameHeader) Verify(payload []byte) error {
	// Compared in 64 bits: a payload of 4 GiB + Length bytes must not pass.
	if uint64(len(payload)) != uint64(h.Length) {
		return ErrTruncated
	}
	if crc32.Update(h.HeaderChecksum(), castagnoli, payload) != h.Checksum {
		return ErrChecksum
	}
	return nil
}
