package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// MaxFileHeaderSize bounds an encoded FileHeader, in bytes.
const MaxFileHeaderSize = 64

// FileHeader opens a file-transfer connection, right after the handshake.
// The receiver answers it with a FileResult (ready, or why not); then the
// raw file bytes follow, Length of them, then a FileTrailerSize trailer
// holding their CRC32C (big-endian), which the sender computes while the
// bytes are on their way, unless Flags has FileUnchecked; then the
// receiver answers with a final FileResult.
//
// Layout: header_len u16 | verb uvarint | id uvarint | created_at i64 |
// ttl uvarint (ns from when the header is written, 0 = never) | length
// uvarint | flags uvarint (only when the handshake agreed CapFileFlags,
// and left out when 0), integers big-endian.
type FileHeader struct {
	Verb      uint32
	ID        uint64
	CreatedAt int64 // Unix ns, sender's clock
	// TTL is how long the transfer stays worth finishing, in ns from when
	// the header is written, as Header.TTL; 0 = never.
	TTL    int64
	Length uint64
	// Flags may be other than 0 only on a connection whose handshake
	// agreed CapFileFlags.
	Flags FileFlags
}

// CapFileFlags is the capability bit that says a node reads a flags field
// at the end of a FileHeader. When the Reply of a file-transfer
// connection carries it, the initiator may end its FileHeader with a
// flags uvarint (FileFlags); without it, a FileHeader with flags is
// malformed. It is part of the wire format.
const CapFileFlags Capabilities = 1 << 2

// FileFlags are a FileHeader's flags. Bits not defined here are
// malformed. They are part of the wire format.
type FileFlags uint64

// FileUnchecked says the sender sends no checksum: no trailer follows the
// file's bytes, and the receiver does not verify them. For files that
// carry checksums of their own, which the application verifies.
const FileUnchecked FileFlags = 1 << 0

// fileFlagsKnown are the flag bits this package defines.
const fileFlagsKnown = FileUnchecked

// Deadline returns when the transfer expires on the receiver's clock,
// given when its header arrived; 0 when it never does. See
// Header.Deadline.
func (h *FileHeader) Deadline(arrived int64) int64 {
	return (&Header{TTL: h.TTL}).Deadline(arrived)
}

// FileTrailerSize is the size of the checksum that follows a file's bytes.
const FileTrailerSize = 4

// AppendFileHeader appends the encoding of h. It writes h.Flags as they
// are: only defined flags, and none unless the connection's handshake
// agreed CapFileFlags, are the caller's to keep to, or the acceptor
// refuses the header as malformed.
func AppendFileHeader(dst []byte, h *FileHeader) []byte {
	start := len(dst)
	dst = append(dst, 0, 0)
	dst = binary.AppendUvarint(dst, uint64(h.Verb))
	dst = binary.AppendUvarint(dst, h.ID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.CreatedAt))
	var ttl uint64
	if h.TTL != 0 {
		ttl = clampTTL(h.TTL)
	}
	dst = binary.AppendUvarint(dst, ttl)
	dst = binary.AppendUvarint(dst, h.Length)
	if h.Flags != 0 {
		dst = binary.AppendUvarint(dst, uint64(h.Flags))
	}
	binary.BigEndian.PutUint16(dst[start:], uint16(len(dst)-start-2))
	return dst
}

// ReadFileHeader reads one FileHeader from r, never past its end, using
// buf (at least MaxFileHeaderSize bytes); caps are what the connection's
// handshake agreed.
func ReadFileHeader(r io.Reader, buf []byte, caps Capabilities) (FileHeader, error) {
	if len(buf) < MaxFileHeaderSize {
		return FileHeader{}, fmt.Errorf("wire: file header buffer too small")
	}
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return FileHeader{}, truncated(err, io.ErrUnexpectedEOF)
	}
	n := int(binary.BigEndian.Uint16(buf))
	if n+2 > MaxFileHeaderSize {
		return FileHeader{}, fmt.Errorf("%w: file header of %d bytes", ErrMalformed, n)
	}
	if _, err := io.ReadFull(r, buf[2:2+n]); err != nil {
		return FileHeader{}, truncated(err, io.EOF, io.ErrUnexpectedEOF)
	}
	return DecodeFileHeader(buf[:2+n], caps)
}

// DecodeFileHeader decodes one whole FileHeader, read on a connection
// whose handshake agreed caps: with CapFileFlags, the header may end with
// flags.
func DecodeFileHeader(b []byte, caps Capabilities) (FileHeader, error) {
	var h FileHeader
	if len(b) < 2 {
		return h, ErrTruncated
	}
	if int(binary.BigEndian.Uint16(b))+2 != len(b) {
		return h, fmt.Errorf("%w: file header length", ErrMalformed)
	}
	off := 2
	verb, off, err := uvarint(b, off)
	if err != nil {
		return FileHeader{}, err
	}
	if verb > 1<<32-1 {
		return FileHeader{}, fmt.Errorf("%w: verb %d out of range", ErrMalformed, verb)
	}
	h.Verb = uint32(verb)
	if h.ID, off, err = uvarint(b, off); err != nil {
		return FileHeader{}, err
	}
	if len(b)-off < 8 {
		return FileHeader{}, ErrTruncated
	}
	h.CreatedAt = int64(binary.BigEndian.Uint64(b[off:]))
	off += 8
	var ttl uint64
	if ttl, off, err = uvarint(b, off); err != nil {
		return FileHeader{}, err
	}
	if ttl > MaxTTL {
		return FileHeader{}, fmt.Errorf("%w: time to live %d ns out of range", ErrMalformed, ttl)
	}
	h.TTL = int64(ttl)
	if h.Length, off, err = uvarint(b, off); err != nil {
		return FileHeader{}, err
	}
	if off != len(b) && caps&CapFileFlags != 0 {
		var flags uint64
		if flags, off, err = uvarint(b, off); err != nil {
			return FileHeader{}, err
		}
		if flags&^uint64(fileFlagsKnown) != 0 {
			return FileHeader{}, fmt.Errorf("%w: file flags %#x", ErrMalformed, flags)
		}
		h.Flags = FileFlags(flags)
	}
	if off != len(b) {
		return FileHeader{}, fmt.Errorf("%w: %d trailing bytes in file header", ErrMalformed, len(b)-off)
	}
	return h, nil
}

// AppendFileResult appends the receiver's answer after the file bytes:
// result_len u16 | failure payload (see AppendFailure), empty on success.
func AppendFileResult(dst []byte, failure *Failure) []byte {
	start := len(dst)
	dst = append(dst, 0, 0)
	if failure != nil {
		dst = AppendFailure(dst, *failure)
	}
	binary.BigEndian.PutUint16(dst[start:], uint16(len(dst)-start-2))
	return dst
}

// ReadFileResult reads a file result: nil on success, the failure
// otherwise.
func ReadFileResult(r io.Reader) (*Failure, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, truncated(err, io.ErrUnexpectedEOF)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 {
		return nil, nil
	}
	if n > MaxFailureMessage+binary.MaxVarintLen16+1 {
		return nil, fmt.Errorf("%w: file result of %d bytes", ErrMalformed, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, truncated(err, io.EOF, io.ErrUnexpectedEOF)
	}
	f, err := DecodeFailure(b)
	if err != nil {
		return nil, err
	}
	return &f, nil
}
