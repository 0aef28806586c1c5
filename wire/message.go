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
	// FlagParams says a parameter block follows the expiry.
	FlagParams MessageFlags = 1 << 3

	knownFlags = FlagExpectsResponse | FlagResponse | FlagFailure | FlagParams
)

// MaxParamsSize is the largest parameter block, in bytes.
const MaxParamsSize = 4 << 10

// expiry returns created+ttl, saturating rather than wrapping into the past,
// and never 0 (which means "never").
func expiry(created int64, ttl uint64) int64 {
	e := created + int64(ttl)
	if created > math.MaxInt64-int64(ttl) {
		e = math.MaxInt64
	}
	if e == 0 {
		e = 1
	}
	return e
}

// maxTTL is the longest time to live a header can carry, in nanoseconds
// (about 146 years). AppendHeader writes a longer one as maxTTL and
// DecodeHeader rejects a longer one. It is part of the wire format.
const maxTTL = 1 << 62

// MaxHeaderSize bounds an encoded message header, parameters included. Every
// header DecodeHeader accepts is at most this long (varints must be minimal,
// so their lengths are bounded by their values).
const MaxHeaderSize = 1 + 3*binary.MaxVarintLen64 + 8 + binary.MaxVarintLen32 + 2*binary.MaxVarintLen32 + MaxParamsSize

// Header is a message header: everything about a message but its payload.
type Header struct {
	Flags MessageFlags
	ID    uint64 // sender-unique; a response carries its request's ID
	Verb  uint32 // what the message means; chosen by the application
	// CreatedAt is when the sender created the message, in Unix nanoseconds
	// of the sender's clock.
	CreatedAt int64
	// ExpiresAt is when the message stops being worth delivering, in Unix
	// nanoseconds; 0 means never. It is encoded relative to CreatedAt.
	ExpiresAt int64
	// Params is the raw parameter block (see AppendParam), nil when absent.
	// After DecodeHeader it aliases the input.
	Params        []byte
	PayloadLength uint32
}

// Expired reports whether the message has expired at now (Unix nanoseconds).
func (h *Header) Expired(now int64) bool { return h.ExpiresAt != 0 && now >= h.ExpiresAt }

// AppendHeader appends the encoding of h to dst.
//
// Layout: flags u8 | id uvarint | verb uvarint | created_at i64 big-endian |
// ttl uvarint (ns after created_at, 0 = never) | [params_len uvarint | params]
// | payload_len uvarint. FlagParams is set from len(h.Params). An ExpiresAt
// at or before CreatedAt is written as a ttl of 1 ns (already expired when
// it arrives); one more than 2^62 ns after CreatedAt is written as 2^62 ns.
//
// h must be a header DecodeHeader would accept: only defined flags, not both
// FlagExpectsResponse and FlagResponse, FlagFailure only with FlagResponse,
// and Params a well-formed block (see AppendParam) of at most MaxParamsSize
// bytes. Anything else would make the peer close the connection, so
// AppendHeader panics rather than write it.
func AppendHeader(dst []byte, h *Header) []byte {
	if err := h.check(); err != nil {
		panic(fmt.Sprintf("wire: AppendHeader of an invalid header (%v)", err))
	}
	flags := h.Flags &^ FlagParams
	if len(h.Params) > 0 {
		flags |= FlagParams
	}
	dst = append(dst, byte(flags))
	dst = binary.AppendUvarint(dst, h.ID)
	dst = binary.AppendUvarint(dst, uint64(h.Verb))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.CreatedAt))
	var ttl uint64
	if h.ExpiresAt != 0 {
		ttl = 1 // an expiry at or before creation is kept as already expired
		if h.ExpiresAt > h.CreatedAt {
			// The subtraction may wrap int64; as uint64 it is still exact.
			ttl = min(uint64(h.ExpiresAt)-uint64(h.CreatedAt), maxTTL)
		}
	}
	dst = binary.AppendUvarint(dst, ttl)
	if flags&FlagParams != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(h.Params)))
		dst = append(dst, h.Params...)
	}
	return binary.AppendUvarint(dst, uint64(h.PayloadLength))
}

// check reports why h cannot be encoded, or nil.
func (h *Header) check() error {
	flags := h.Flags &^ FlagParams
	if len(h.Params) > 0 {
		flags |= FlagParams
	}
	if err := checkFlags(flags); err != nil {
		return err
	}
	if len(h.Params) > MaxParamsSize {
		return fmt.Errorf("%w: parameter block of %d bytes, limit %d", ErrMalformed, len(h.Params), MaxParamsSize)
	}
	return checkParams(h.Params)
}

func checkFlags(f MessageFlags) error {
	if f&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown message flags %#x", ErrMalformed, uint8(f))
	}
	if f&FlagResponse != 0 && f&FlagExpectsResponse != 0 {
		return fmt.Errorf("%w: message is both request and response", ErrMalformed)
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
// present, alias b. An ExpiresAt that would pass the largest int64 is
// clamped to math.MaxInt64.
//
// It returns ErrTruncated when b ends inside the header, ErrMalformed (wrapped)
// for anything not valid, and ErrMessageTooLarge (wrapped) for a payload
// length above maxPayload.
func DecodeHeader(b []byte, maxPayload uint32) (Header, int, error) {
	var h Header
	if len(b) < 1 {
		return Header{}, 0, ErrTruncated
	}
	h.Flags = MessageFlags(b[0])
	if err := checkFlags(h.Flags); err != nil {
		return Header{}, 0, err
	}
	n := 1
	var err error
	if h.ID, n, err = uvarint(b, n); err != nil {
		return Header{}, 0, err
	}
	var verb uint64
	if verb, n, err = uvarint(b, n); err != nil {
		return Header{}, 0, err
	}
	if verb > 1<<32-1 {
		return Header{}, 0, fmt.Errorf("%w: verb %d out of range", ErrMalformed, verb)
	}
	h.Verb = uint32(verb)
	if len(b) < n+8 {
		return Header{}, 0, ErrTruncated
	}
	h.CreatedAt = int64(binary.BigEndian.Uint64(b[n:]))
	n += 8
	var ttl uint64
	if ttl, n, err = uvarint(b, n); err != nil {
		return Header{}, 0, err
	}
	if ttl != 0 {
		if ttl > maxTTL {
			return Header{}, 0, fmt.Errorf("%w: expiry %d ns out of range", ErrMalformed, ttl)
		}
		h.ExpiresAt = expiry(h.CreatedAt, ttl)
	}
	if h.Flags&FlagParams != 0 {
		var plen uint64
		if plen, n, err = uvarint(b, n); err != nil {
			return Header{}, 0, err
		}
		if plen == 0 || plen > MaxParamsSize {
			return Header{}, 0, fmt.Errorf("%w: parameter block of %d bytes", ErrMalformed, plen)
		}
		if uint64(len(b)-n) < plen {
			return Header{}, 0, ErrTruncated
		}
		h.Params = b[n : n+int(plen) : n+int(plen)]
		if err := checkParams(h.Params); err != nil {
			return Header{}, 0, err
		}
		n += int(plen)
	}
	var plen uint64
	if plen, n, err = uvarint(b, n); err != nil {
		return Header{}, 0, err
	}
	if plen > uint64(maxPayload) {
		return Header{}, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, plen, maxPayload)
	}
	h.PayloadLength = uint32(plen)
	return h, n, nil
}

// uvarint decodes the minimal-length uvarint at b[off:] and returns it with
// the offset after it. A longer encoding than needed (a final byte of 0x00)
// is malformed: it keeps every encoding unique and every header within
// MaxHeaderSize.
func uvarint(b []byte, off int) (uint64, int, error) {
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
