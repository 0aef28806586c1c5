package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Magic opens every handshake: "INOD".
const Magic uint32 = 0x494E4F44

// Protocol versions. Version 1 had no back channel (no FrameGrant,
// FrameBeat...); version 2 carried a message's expiry relative to its
// creation on the sender's clock; this package speaks only version 3,
// whose expiry is the time left when the message is written.
const (
	Version1   uint8 = 1
	Version2   uint8 = 2
	Version3   uint8 = 3
	MinVersion       = Version3
	MaxVersion       = Version3
)

// MaxHandshakeSize bounds an encoded Hello or Reply, in bytes.
const MaxHandshakeSize = 1024

// MaxNameLength bounds cluster names and node IDs, in bytes.
const MaxNameLength = 255

// handshakePrefix is magic u32 | body_len u16.
const handshakePrefix = 6

// Capabilities are optional features a node offers; the reply carries the
// ones both sides have. Version 3 defines CapBatchS2, CapEagerResponses,
// CapFileFlags and CapAcceptorID; unknown bits are ignored so that later
// builds can add them.
type Capabilities uint32

// CapEagerResponses is the capability bit that says an initiator takes
// every large response without granting it. When the Reply carries it,
// the acceptor writes a large response's FrameLargeMore parts right
// after its FrameLargeBegin, without waiting for a FrameGrant, and the
// initiator writes no FrameGrant for it: a grant would travel on the
// connection behind the initiator's own bytes, which the acceptor may
// have stopped reading. The initiator still refuses a response it cannot
// take (FrameRefuse), and reads and discards its parts until they end or
// the acceptor withdraws it; an acceptor that reads the refusal withdraws
// the response (FrameLargeCancel) if parts of it are still to come. It is
// part of the wire format.
const CapEagerResponses Capabilities = 1 << 1

// CapAcceptorID is the capability bit that says an initiator checks whom
// it reached. When the Reply carries it, an accepting Reply's message is
// the acceptor's node ID, and the initiator closes the connection if that
// is not the node it meant to reach (the address it dialled was another
// node's once, and the membership has not caught up). Without TLS,
// nothing else tells an initiator that a node at a stale address is not
// the one it wants. It is part of the wire format.
const CapAcceptorID Capabilities = 1 << 3

// Hello opens a connection: the initiator says who it is and what it wants.
type Hello struct {
	MinVersion   uint8
	MaxVersion   uint8
	Lane         uint8 // see package routing; the connection carries only this lane
	Capabilities Capabilities
	Cluster      string
	Node         string
}

// RefuseReason says why an acceptor refused a Hello. It is part of the wire format.
type RefuseReason uint8

const (
	Accepted           RefuseReason = 0
	UnsupportedVersion RefuseReason = 1
	WrongCluster       RefuseReason = 2
	UnknownNode        RefuseReason = 3
	IdentityMismatch   RefuseReason = 4
	BadLane            RefuseReason = 5
	Refused            RefuseReason = 6 // any other reason; see the message
	// Busy: the acceptor has no room for the connection now (it holds as
	// many from the initiator as it allows, or it is shutting down); a
	// later attempt may be accepted.
	Busy RefuseReason = 7
)

func (r RefuseReason) String() string {
	switch r {
	case Accepted:
		return "accepted"
	case UnsupportedVersion:
		return "unsupported version"
	case WrongCluster:
		return "wrong cluster"
	case UnknownNode:
		return "unknown node"
	case IdentityMismatch:
		return "identity mismatch"
	case BadLane:
		return "bad lane"
	case Refused:
		return "refused"
	case Busy:
		return "busy"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Reply answers a Hello: the chosen version, or a reason for refusal.
type Reply struct {
	Version      uint8        // chosen version; 0 when refused
	Reason       RefuseReason // Accepted, or why not
	Capabilities Capabilities
	// Message is a human-readable detail of a refusal, at most
	// MaxNameLength bytes; in an accepting Reply that carries
	// CapAcceptorID, the acceptor's node ID.
	Message string
}

// AppendHello appends the encoding of h:
// magic u32 | body_len u16 | min_version u8 | max_version u8 | lane u8 |
// capabilities u32 | cluster_len u8 | cluster | node_len u8 | node | crc32c u32
// where body_len counts the bytes after it, checksum included, and the
// checksum covers everything before it. It returns an error, and dst
// unchanged, when a name is longer than MaxNameLength or the version range
// is one DecodeHello rejects (MinVersion 0 or above MaxVersion).
func AppendHello(dst []byte, h *Hello) ([]byte, error) {
	if len(h.Cluster) > MaxNameLength || len(h.Node) > MaxNameLength {
		return dst, fmt.Errorf("wire: cluster name and node ID must be at most %d bytes", MaxNameLength)
	}
	if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
		return dst, fmt.Errorf("wire: bad version range [%d, %d]", h.MinVersion, h.MaxVersion)
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, Magic)
	dst = binary.BigEndian.AppendUint16(dst, 0) // body length, set below
	dst = append(dst, h.MinVersion, h.MaxVersion, h.Lane)
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Capabilities))
	dst = append(dst, byte(len(h.Cluster)))
	dst = append(dst, h.Cluster...)
	dst = append(dst, byte(len(h.Node)))
	dst = append(dst, h.Node...)
	return sealHandshake(dst, start), nil
}

// AppendReply appends the encoding of r:
// magic u32 | body_len u16 | version u8 | reason u8 | capabilities u32 |
// message_len u8 | message | crc32c u32. A message longer than
// MaxNameLength is cut at a UTF-8 character boundary. A refusal is written
// with version 0 whatever r.Version holds; an acceptance with version 0
// could not be decoded, so AppendReply panics on it.
func AppendReply(dst []byte, r *Reply) []byte {
	version := r.Version
	if r.Reason != Accepted {
		version = 0
	} else if version == 0 {
		panic("wire: AppendReply: accepted reply without a version")
	}
	msg := cutUTF8(r.Message, MaxNameLength)
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, Magic)
	dst = binary.BigEndian.AppendUint16(dst, 0)
	dst = append(dst, version, byte(r.Reason))
	dst = binary.BigEndian.AppendUint32(dst, uint32(r.Capabilities))
	dst = append(dst, byte(len(msg)))
	dst = append(dst, msg...)
	return sealHandshake(dst, start)
}

func sealHandshake(dst []byte, start int) []byte {
	binary.BigEndian.PutUint16(dst[start+4:], uint16(len(dst)-start-handshakePrefix+4))
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// ReadHandshake reads one handshake message (Hello or Reply) from r into
// buf, which must hold at least MaxHandshakeSize bytes, and returns the
// bytes read. It checks the magic, bound and checksum before returning, and
// never reads past the message: a length above MaxHandshakeSize is refused
// before any of the body is read.
//
// It returns io.EOF when r ends before the first byte, ErrTruncated when it
// ends inside the message, ErrBadMagic, ErrHandshakeTooLarge, ErrMalformed
// or ErrChecksum for bad bytes, and any other error of r as it is. The
// caller bounds the time taken (a deadline on the connection).
func ReadHandshake(r io.Reader, buf []byte) ([]byte, error) {
	if len(buf) < MaxHandshakeSize {
		return nil, errors.New("wire: handshake buffer too small")
	}
	if _, err := io.ReadFull(r, buf[:handshakePrefix]); err != nil {
		return nil, truncated(err, io.ErrUnexpectedEOF)
	}
	if binary.BigEndian.Uint32(buf) != Magic {
		return nil, ErrBadMagic
	}
	total, err := handshakeTotal(buf)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(r, buf[handshakePrefix:total]); err != nil {
		// The prefix has arrived: an end here is a cut message.
		return nil, truncated(err, io.EOF, io.ErrUnexpectedEOF)
	}
	if _, err := openHandshake(buf[:total]); err != nil {
		return nil, err
	}
	return buf[:total], nil
}

// errCut is what ReadHandshake returns when r ends inside a message; it
// satisfies errors.Is for both ErrTruncated and io.ErrUnexpectedEOF.
var errCut = fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)

// truncated returns errCut when err is one of ends, else err.
func truncated(err error, ends ...error) error {
	for _, end := range ends {
		if errors.Is(err, end) {
			return errCut
		}
	}
	return err
}

// handshakeTotal returns the whole length of the handshake message whose
// prefix starts b, checked against MaxHandshakeSize and the checksum size.
func handshakeTotal(b []byte) (int, error) {
	bodyLen := int(binary.BigEndian.Uint16(b[4:]))
	total := handshakePrefix + bodyLen
	if total > MaxHandshakeSize {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrHandshakeTooLarge, total, MaxHandshakeSize)
	}
	if bodyLen < 4 {
		return 0, fmt.Errorf("%w: handshake body of %d bytes cannot hold its checksum", ErrMalformed, bodyLen)
	}
	return total, nil
}

// openHandshake checks the framing of one whole handshake message and
// returns its body without the checksum.
func openHandshake(b []byte) ([]byte, error) {
	if len(b) < handshakePrefix {
		return nil, ErrTruncated
	}
	if binary.BigEndian.Uint32(b) != Magic {
		return nil, ErrBadMagic
	}
	total, err := handshakeTotal(b)
	if err != nil {
		return nil, err
	}
	if len(b) < total {
		return nil, ErrTruncated
	}
	if len(b) > total {
		return nil, fmt.Errorf("%w: %d bytes after the handshake message", ErrMalformed, len(b)-total)
	}
	end := total - 4
	if crc32.Checksum(b[:end], castagnoli) != binary.BigEndian.Uint32(b[end:]) {
		return nil, ErrChecksum
	}
	return b[handshakePrefix:end], nil
}

// DecodeHello decodes one whole Hello, as returned by ReadHandshake; b must
// hold exactly one message. Unknown capability bits are kept (the acceptor
// answers with the bits both sides know); the lane is not checked here.
func DecodeHello(b []byte) (Hello, error) {
	body, err := openHandshake(b)
	if err != nil {
		return Hello{}, err
	}
	if len(body) < 7 {
		return Hello{}, ErrTruncated
	}
	h := Hello{MinVersion: body[0], MaxVersion: body[1], Lane: body[2],
		Capabilities: Capabilities(binary.BigEndian.Uint32(body[3:]))}
	rest := body[7:]
	if h.Cluster, rest, err = shortString(rest); err != nil {
		return Hello{}, err
	}
	if h.Node, rest, err = shortString(rest); err != nil {
		return Hello{}, err
	}
	if len(rest) != 0 {
		return Hello{}, fmt.Errorf("%w: %d trailing bytes in hello", ErrMalformed, len(rest))
	}
	if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
		return Hello{}, fmt.Errorf("%w: version range [%d, %d]", ErrMalformed, h.MinVersion, h.MaxVersion)
	}
	return h, nil
}

// DecodeReply decodes one whole Reply, as returned by ReadHandshake; b must
// hold exactly one message. A reason this version does not define is
// returned as it is and means refused. Whether an accepted version lies in
// the range the Hello offered is for the caller to check.
func DecodeReply(b []byte) (Reply, error) {
	body, err := openHandshake(b)
	if err != nil {
		return Reply{}, err
	}
	if len(body) < 6 {
		return Reply{}, ErrTruncated
	}
	r := Reply{Version: body[0], Reason: RefuseReason(body[1]),
		Capabilities: Capabilities(binary.BigEndian.Uint32(body[2:]))}
	rest := body[6:]
	if r.Message, rest, err = shortString(rest); err != nil {
		return Reply{}, err
	}
	if len(rest) != 0 {
		return Reply{}, fmt.Errorf("%w: %d trailing bytes in reply", ErrMalformed, len(rest))
	}
	if (r.Reason == Accepted) != (r.Version != 0) {
		return Reply{}, fmt.Errorf("%w: reply with version %d and reason %d", ErrMalformed, r.Version, r.Reason)
	}
	return r, nil
}

func shortString(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, ErrTruncated
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], nil
}

// Negotiate picks the highest version in both [min, max] and what this
// package speaks. ok is false when the ranges do not overlap.
func Negotiate(h *Hello) (version uint8, ok bool) {
	hi := min(h.MaxVersion, MaxVersion)
	lo := max(h.MinVersion, MinVersion)
	if lo > hi {
		return 0, false
	}
	return hi, true
}
