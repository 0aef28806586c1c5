package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// MessageFlags are the per-message flag bits. They are part of the wire format.
type MessageFlags uint8

const (
	// FlagExpectsResponse marks a request: the receiver answers with a
	// message carrying FlagResponse and the same ID.
	FlagExpectsResponse MessageFlags = 1 << 0
	// FlagResponse marks the answer to the request with the same ID.
	FlagResponse MessageFlags = 1 << 1
	// FlagFailure marks a response whose payload is an encoded Failure.
	FlagFailure MessageFlags = 1 << 2
	// FlagParams says a parameter block follows created_at (and the ttl,
	// when there is one).
	FlagParams MessageFlags = 1 << 3
	// FlagTTL says an 8-byte time to live follows created_at.
	FlagTTL MessageFlags = 1 << 4
	// FlagCancel marks a cancel: its sender no longer waits for the
	// response to its request with the same ID and verb, so the receiver
	// may stop or skip the handler. It has no payload.
	FlagCancel MessageFlags = 1 << 5

	knownFlags = FlagExpectsResponse | FlagResponse | FlagFailure | FlagParams | FlagTTL | FlagCancel
)

// MaxParamsSize is the largest parameter block, in bytes.
const MaxParamsSize = 4 << 10

// MaxTTL is the longest time to live a header can carry, in nanoseconds
// (about 146 years). AppendHeader writes a longer one as MaxTTL and
// DecodeHeader rejects a longer one. It is part of the wire format.
const MaxTTL = 1 << 62

// MaxHeaderSize bounds an encoded message header, parameters included. Every
// header DecodeHeader accepts is at most this long (varints must be minimal,
// so their lengths are bounded by their values).
const MaxHeaderSize = 1 + // flags
	binary.MaxVarintLen64 + binary.MaxVarintLen32 + // id, verb
	8 + 8 + // created_at, ttl
	2 + MaxParamsSize + // params_len (at most 4096: two bytes), params
	binary.MaxVarintLen32 // payload_len

// Header is a message header: everything about a message but its payload.
type Header struct {
	Flags MessageFlags
	ID    uint64 // sender-unique; a response carries its request's ID
	Verb  uint32 // what the message means; chosen by the application
	// CreatedAt is when the sender created the message, in Unix nanoseconds
	// of the sender's clock: for tracing and latency figures, never for
	// expiry, since the two clocks may disagree.
	CreatedAt int64
	// TTL is how much longer the message is worth delivering, in
	// nanoseconds, counted from the moment its frame is written; 0 means
	// it never expires. A receiver's deadline is its own clock at arrival
	// plus TTL (see Deadline), so a skewed clock on either side does not
	// move it. A writer sets it as late as it can (SetTTL).
	TTL int64
	// Params is the raw parameter block (see AppendParam), nil when absent.
	// After DecodeHeader it aliases the input.
	Params        []byte
	PayloadLength uint32
}

// Deadline returns the moment the message expires on the receiver's
// clock, given when it arrived (both Unix nanoseconds): arrived + TTL,
// saturating at the largest int64; 0 when it never expires.
func (h *Header) Deadline(arrived int64) int64 {
	if h.TTL == 0 {
		return 0
	}
	if arrived > math.MaxInt64-h.TTL {
		return math.MaxInt64
	}
	return arrived + h.TTL
}

// clampTTL is the ttl AppendHeader writes for t: 1 for an expiry already
// past, MaxTTL at most.
func clampTTL(t int64) uint64 {
	switch {
	case t < 1:
		return 1
	case t > MaxTTL:
		return MaxTTL
	}
	return uint64(t)
}

// AppendHeader appends the encoding of h to dst.
//
// Layout: flags u8 | id uvarint | verb uvarint | created_at i64 big-endian |
// [ttl u64 big-endian] | [params_len uvarint | params] | payload_len
// uvarint. FlagParams is set from len(h.Params) and FlagTTL from h.TTL; a
// negative TTL is written as 1 ns (already expired when it arrives), one
// above MaxTTL as MaxTTL.
//
// h must be a header DecodeHeader would accept: only defined flags; at
// most one of FlagExpectsResponse, FlagResponse and FlagCancel;
// FlagFailure only with FlagResponse; no payload with FlagCancel; and
// Params a well-formed block (see AppendParam) of at most MaxParamsSize
// bytes. Anything else would make the peer close the connection, so
// AppendHeader panics rather than write it.
func AppendHeader(dst []byte, h *Header) []byte {
	if err := h.check(); err != nil {
		panic(fmt.Sprintf("wire: AppendHeader of an invalid header (%v)", err))
	}
	flags := h.flags()
	dst = append(dst, byte(flags))
	dst = binary.AppendUvarint(dst, h.ID)
	dst = binary.AppendUvarint(dst, uint64(h.Verb))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.CreatedAt))
	if flags&FlagTTL != 0 {
		dst = binary.BigEndian.AppendUint64(dst, clampTTL(h.TTL))
	}
	if flags&FlagParams != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(h.Params)))
		dst = append(dst, h.Params...)
	}
	return binary.AppendUvarint(dst, uint64(h.PayloadLength))
}

// check reports why h cannot be encoded, or nil.
func (h *Header) check() error {
	flags := h.flags()
	if err := checkFlags(flags); err != nil {
		return err
	}
	if flags&FlagCancel != 0 && h.PayloadLength != 0 {
		return fmt.Errorf("%w: a cancel with a payload", ErrMalformed)
	}
	if len(h.Params) > MaxParamsSize {
		return fmt.Errorf("%w: parameter block of %d bytes, limit %d", ErrMalformed, len(h.Params), MaxParamsSize)
	}
	return checkParams(h.Params)
}

// flags returns h.Flags with FlagParams and FlagTTL set from the fields.
func (h *Header) flags() MessageFlags {
	flags := h.Flags &^ (FlagParams | FlagTTL)
	if len(h.Params) > 0 {
		flags |= FlagParams
	}
	if h.TTL != 0 {
		flags |= FlagTTL
	}
	return flags
}

func checkFlags(f MessageFlags) error {
	if f&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown message flags %#x", ErrMalformed, uint8(f))
	}
	if kinds := f & (FlagExpectsResponse | FlagResponse | FlagCancel); kinds&(kinds-1) != 0 {
		return fmt.Errorf("%w: message is more than one of request, response and cancel", ErrMalformed)
	}
	if f&FlagFailure != 0 && f&FlagResponse == 0 {
		return fmt.Errorf("%w: failure flag on a non-response", ErrMalformed)
	}
	return nil
}

// DecodeHeader decodes a message header from the start of b and returns it
// with the number of bytes it took. A payload length above maxPayload is
// rejected with ErrMessageTooLarge before the caller allocates anything for
// it; the payload itself is not checked (it need not be in b). Params, when
// present, alias b.
//
// It returns ErrTruncated when b ends inside the header, ErrMalformed (wrapped)
// for anything not valid, and ErrMessageTooLarge (wrapped) for a payload
// length above maxPayload.
func DecodeHeader(b []byte, maxPayload uint32) (Header, int, error) {
	var h Header
	n, err := h.Decode(b, maxPayload)
	return h, n, err
}

// Decode is DecodeHeader into h, which a reader can keep for every message
// of a batch: it returns the number of bytes the header took, and leaves h
// zero on an error.
func (h *Header) Decode(b []byte, maxPayload uint32) (int, error) {
	n, err := h.decode(b, maxPayload)
	if err != nil {
		*h = Header{}
		return 0, err
	}
	return n, nil
}

func (h *Header) decode(b []byte, maxPayload uint32) (int, error) {
	if len(b) < 1 {
		return 0, ErrTruncated
	}
	h.Flags = MessageFlags(b[0])
	if err := checkFlags(h.Flags); err != nil {
		return 0, err
	}
	n := 1
	var err error
	if h.ID, n, err = uvarint(b, n); err != nil {
		return 0, err
	}
	var verb uint64
	if verb, n, err = uvarint(b, n); err != nil {
		return 0, err
	}
	if verb > 1<<32-1 {
		return 0, fmt.Errorf("%w: verb %d out of range", ErrMalformed, verb)
	}
	h.Verb = uint32(verb)
	if len(b) < n+8 {
		return 0, ErrTruncated
	}
	h.CreatedAt = int64(binary.BigEndian.Uint64(b[n:]))
	n += 8
	h.TTL = 0
	if h.Flags&FlagTTL != 0 {
		if len(b) < n+8 {
			return 0, ErrTruncated
		}
		ttl := binary.BigEndian.Uint64(b[n:])
		if ttl == 0 || ttl > MaxTTL {
			return 0, fmt.Errorf("%w: time to live %d ns out of range", ErrMalformed, ttl)
		}
		h.TTL = int64(ttl)
		n += 8
	}
	h.Params = nil
	if h.Flags&FlagParams != 0 {
		var plen uint64
		if plen, n, err = uvarint(b, n); err != nil {
			return 0, err
		}
		if plen == 0 || plen > MaxParamsSize {
			return 0, fmt.Errorf("%w: parameter block of %d bytes", ErrMalformed, plen)
		}
		if uint64(len(b)-n) < plen {
			return 0, ErrTruncated
		}
		h.Params = b[n : n+int(plen) : n+int(plen)]
		if err := checkParams(h.Params); err != nil {
			return 0, err
		}
		n += int(plen)
	}
	var plen uint64
	if plen, n, err = uvarint(b, n); err != nil {
		return 0, err
	}
	if plen > uint64(maxPayload) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, plen, maxPayload)
	}
	if plen != 0 && h.Flags&FlagCancel != 0 {
		return 0, fmt.Errorf("%w: a cancel with a payload", ErrMalformed)
	}
	h.PayloadLength = uint32(plen)
	return n, nil
}

// SetTTL rewrites, in place, the time to live of the encoded header at the
// start of b, which must have one (FlagTTL): a writer calls it as the
// frame goes out, so that the time a message waited in its sender's queue
// is not given to it again at the receiver. A ttl below 1 is written as 1,
// one above MaxTTL as MaxTTL.
func SetTTL(b []byte, ttl int64) error {
	if len(b) < 1 {
		return ErrTruncated
	}
	if MessageFlags(b[0])&FlagTTL == 0 {
		return fmt.Errorf("%w: no time to live to set", ErrMalformed)
	}
	_, n, err := uvarint(b, 1)
	if err != nil {
		return err
	}
	if _, n, err = uvarint(b, n); err != nil {
		return err
	}
	n += 8 // created_at
	if len(b) < n+8 {
		return ErrTruncated
	}
	binary.BigEndian.PutUint64(b[n:], clampTTL(ttl))
	return nil
}

// uvarint decodes the minimal-length uvarint at b[off:] and returns it with
// the offset after it. A longer encoding than needed (a final byte of 0x00)
// is malformed: it keeps every encoding unique and every header within
// MaxHeaderSize.
func uvarint(b []byte, off int) (uint64, int, error) {
	if uint(off) < uint(len(b)) && b[off] < 0x80 { // one byte: most verbs and lengths
		return uint64(b[off]), off + 1, nil
	}
	return uvarintLong(b, off)
}

func uvarintLong(b []byte, off int) (uint64, int, error) {
	// Two and three bytes (payload lengths to 2 MiB, the first IDs)
	// without binary.Uvarint's loop.
	if uint(off+2) < uint(len(b)) && b[off] >= 0x80 {
		b0, b1, b2 := b[off], b[off+1], b[off+2]
		switch {
		case b1 != 0 && b1 < 0x80:
			return uint64(b0&0x7f) | uint64(b1)<<7, off + 2, nil
		case b1 >= 0x80 && b2 != 0 && b2 < 0x80:
			return uint64(b0&0x7f) | uint64(b1&0x7f)<<7 | uint64(b2)<<14, off + 3, nil
		}
	}
	v, k := binary.Uvarint(b[off:])
	switch {
	case k == 0:
		return 0, off, ErrTruncated
	case k < 0:
		return 0, off, fmt.Errorf("%w: varint overflows 64 bits", ErrMalformed)
	case k > 1 && b[off+k-1] == 0:
		return 0, off, fmt.Errorf("%w: varint not minimally encoded", ErrMalformed)
	}
	return v, off + k, nil
}

// AppendParam appends one key/value pair to a parameter block: key_len
// uvarint | key | value_len uvarint | value. Keys are short ASCII names such
// as "traceparent".
func AppendParam(block []byte, key string, value []byte) []byte {
	block = binary.AppendUvarint(block, uint64(len(key)))
	block = append(block, key...)
	block = binary.AppendUvarint(block, uint64(len(value)))
	return append(block, value...)
}

// RangeParams calls fn for each pair in a parameter block, in order, until
// fn returns false. Key and value alias the block.
func RangeParams(block []byte, fn func(key, value []byte) bool) error {
	for off := 0; off < len(block); {
		key, next, err := lengthPrefixed(block, off)
		if err != nil {
			return err
		}
		value, next, err := lengthPrefixed(block, next)
		if err != nil {
			return err
		}
		off = next
		if !fn(key, value) {
			return nil
		}
	}
	return nil
}

// Param returns the value of the first pair with the given key.
func Param(block []byte, key string) ([]byte, bool) {
	var out []byte
	found := false
	_ = RangeParams(block, func(k, v []byte) bool {
		if string(k) == key {
			out, found = v, true
			return false
		}
		return true
	})
	return out, found
}

func checkParams(block []byte) error {
	return RangeParams(block, func(_, _ []byte) bool { return true })
}

func lengthPrefixed(b []byte, off int) ([]byte, int, error) {
	l, n, err := uvarint(b, off)
	if errors.Is(err, ErrTruncated) {
		// The block's own length said where it ends: a cut length inside
		// it is malformed, not truncated input.
		return nil, off, fmt.Errorf("%w: parameter block ends inside a length", ErrMalformed)
	}
	if err != nil {
		return nil, off, err
	}
	if uint64(len(b)-n) < l {
		return nil, off, fmt.Errorf("%w: parameter overruns its block", ErrMalformed)
	}
	return b[n : n+int(l)], n + int(l), nil
}
