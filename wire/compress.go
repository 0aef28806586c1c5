package wire

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// CapBatchS2 is the capability bit that says a node reads FrameBatchS2
// frames. When the Reply carries it (both sides offered it), either side
// may send its batch frames as FrameBatchS2 instead of FrameBatch; without
// it, a FrameBatchS2 is malformed. It is part of the wire format.
const CapBatchS2 Capabilities = 1 << 0

// AppendBatchS2 appends to dst the FrameBatchS2 payload that carries
// batch (a FrameBatch payload): one S2 block. It allocates only when dst
// has less room than MaxBatchS2Len(len(batch)). The result may be longer
// than batch when batch does not compress; whether to send it then is the
// caller's choice. batch must not be empty: a block of no batch could not
// be read back (BatchS2Len refuses plain_len 0), so AppendBatchS2 panics
// rather than write it.
func AppendBatchS2(dst, batch []byte) []byte {
	if len(batch) == 0 {
		panic("wire: AppendBatchS2 of an empty batch")
	}
	n := len(dst)
	if free := cap(dst) - n; free < s2.MaxEncodedLen(len(batch)) {
		grown := make([]byte, n, n+s2.MaxEncodedLen(len(batch)))
		copy(grown, dst)
		dst = grown
	}
	block := s2.Encode(dst[n:cap(dst)], batch)
	return dst[:n+len(block)]
}

// MaxBatchS2Len returns the longest FrameBatchS2 payload AppendBatchS2 can
// produce for a batch of n bytes.
func MaxBatchS2Len(n int) int { return s2.MaxEncodedLen(n) }

// BatchS2Len returns the length of the batch a FrameBatchS2 payload
// decodes to, read from the block's first bytes (at most
// MaxBatchS2Prefix of them), without decoding anything. It returns
// ErrTruncated when b, shorter than MaxBatchS2Prefix, ends inside the
// length, ErrMalformed for a length that is 0 or not minimally encoded,
// and ErrFrameTooLarge for one above maxLen (the reader's frame limit) or
// longer than MaxBatchS2Prefix bytes, so that a reader allocates nothing
// for a decompression bomb.
func BatchS2Len(b []byte, maxLen uint32) (int, error) {
	// A reader may hold only the first MaxBatchS2Prefix bytes of the
	// block, and they are enough: a length that does not end within them
	// is 2^35 or more, above any frame limit, so it is refused as too
	// large, not as cut short.
	v, _, err := uvarint(b[:min(len(b), MaxBatchS2Prefix)], 0)
	if errors.Is(err, ErrTruncated) && len(b) >= MaxBatchS2Prefix {
		return 0, fmt.Errorf("%w: compressed batch length longer than %d bytes", ErrFrameTooLarge, MaxBatchS2Prefix)
	}
	switch {
	case err != nil:
		return 0, err
	case v == 0:
		return 0, fmt.Errorf("%w: empty compressed batch", ErrMalformed)
	case v > uint64(maxLen):
		return 0, fmt.Errorf("%w: compressed batch of %d bytes, limit %d", ErrFrameTooLarge, v, maxLen)
	}
	return int(v), nil
}

// MaxBatchS2Prefix is the most bytes BatchS2Len reads: the uvarint of a
// length up to 2^32-1.
const MaxBatchS2Prefix = 5

// MaxBatchS2Block returns the longest FrameBatchS2 payload that can
// decode to a batch of n bytes: a longer one is malformed, and a reader
// refuses it from the frame's Length and the block's plain_len, before it
// holds the block. It is not MaxBatchS2Len(n), the longest that
// AppendBatchS2 writes: other valid encoders write longer blocks (a
// Snappy encoder starts a literal every 64 KiB), and the bound must
// refuse no block that decodes. Every element of a block decodes to at
// least one byte, and costs at most 6 bytes per byte it decodes to (a
// 1-byte literal whose length takes 4 bytes): so n's uvarint, then 6n.
func MaxBatchS2Block(n int) int {
	return uvarintLen(uint64(n)) + 6*n
}

// uvarintLen is the length of v's minimal uvarint.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// DecodeBatchS2 decodes the FrameBatchS2 payload b into dst, whose length
// must be what BatchS2Len returned for b; dst and b must not overlap. It
// returns ErrMalformed when b is not an S2 block that decodes to exactly
// len(dst) bytes, and writes nothing beyond dst, whatever b holds.
func DecodeBatchS2(dst, b []byte) error {
	n, err := BatchS2Len(b, 1<<32-1)
	if err != nil {
		return err
	}
	if n != len(dst) {
		return fmt.Errorf("%w: compressed batch of %d bytes into %d", ErrMalformed, n, len(dst))
	}
	if len(b) > MaxBatchS2Block(n) {
		return fmt.Errorf("%w: compressed batch of %d bytes in a block of %d", ErrMalformed, n, len(b))
	}
	out, err := s2.Decode(dst, b)
	if err != nil {
		return fmt.Errorf("%w: compressed batch: %w", ErrMalformed, err)
	}
	if len(out) != len(dst) || len(out) > 0 && &out[0] != &dst[0] {
		return fmt.Errorf("%w: compressed batch decoded to %d bytes, not %d", ErrMalformed, len(out), len(dst))
	}
	return nil
}
