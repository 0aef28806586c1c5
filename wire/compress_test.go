package wire

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsonLike returns n bytes of JSON-like text, compressible as real
// replication traffic is.
func jsonLike(n int) []byte {
	var b bytes.Buffer
	r := rand.New(rand.NewPCG(1, 2))
	for b.Len() < n {
		b.WriteString(`{"key":"user:`)
		b.WriteString(string(rune('a' + r.IntN(26))))
		b.WriteString(`","ts":1700000000,"value":{"name":"alice","tags":["x","y"]}},`)
	}
	return b.Bytes()[:n]
}

func TestBatchS2GoldenBytes(t *testing.T) {
	// The block doc.go draws: a 3-byte literal "abc", then a copy of 9
	// bytes from offset 3 (copy tag 1: 0x01 | (9-4)<<2, offset low byte).
	block := unhex(t, "0c 08 616263 15 03")
	n, err := BatchS2Len(block, DefaultMaxFramePayload)
	require.NoError(t, err)
	require.Equal(t, 12, n)
	dst := make([]byte, n)
	require.NoError(t, DecodeBatchS2(dst, block))
	assert.Equal(t, "abcabcabcabc", string(dst))

	// Any Snappy block is an S2 block: a literal-only encoding is valid.
	literal := unhex(t, "05 10 68656c6c6f")
	dst = make([]byte, 5)
	require.NoError(t, DecodeBatchS2(dst, literal))
	assert.Equal(t, "hello", string(dst))
}

func TestBatchS2RoundTrip(t *testing.T) {
	for _, batch := range [][]byte{
		{1},
		jsonLike(100),
		jsonLike(64 << 10),
		jsonLike(DefaultMaxFramePayload),
		randomBytes(32 << 10),
	} {
		prefix := []byte("header!")
		out := AppendBatchS2(prefix, batch)
		require.Equal(t, "header!", string(out[:7]), "prefix kept")
		block := out[7:]
		assert.LessOrEqual(t, len(block), MaxBatchS2Len(len(batch)))
		n, err := BatchS2Len(block, DefaultMaxFramePayload)
		require.NoError(t, err)
		require.Equal(t, len(batch), n)
		dst := make([]byte, n)
		require.NoError(t, DecodeBatchS2(dst, block))
		assert.Equal(t, batch, dst)
	}
	// JSON-like text shrinks by more than half; random bytes do not.
	assert.Less(t, len(AppendBatchS2(nil, jsonLike(64<<10))), 32<<10)
	assert.GreaterOrEqual(t, len(AppendBatchS2(nil, randomBytes(64<<10))), 64<<10)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestAppendBatchS2DoesNotAllocateWithRoom(t *testing.T) {
	batch := jsonLike(16 << 10)
	dst := make([]byte, 0, MaxBatchS2Len(len(batch)))
	allocs := testing.AllocsPerRun(20, func() { _ = AppendBatchS2(dst, batch) })
	assert.Zero(t, allocs)
}

func TestBatchS2HostileInput(t *testing.T) {
	const limit = 64 << 10
	tests := []struct {
		name  string
		block []byte
		len   error // from BatchS2Len
		dec   error // from DecodeBatchS2 into a buffer of the claimed length
	}{
		{"empty", nil, ErrTruncated, nil},
		{"length cut", []byte{0x80}, ErrTruncated, nil},
		{"zero length", []byte{0x00}, ErrMalformed, nil},
		{"length not minimal", []byte{0x85, 0x00}, ErrMalformed, nil},
		// A bomb: 6 bytes that claim 4 GiB - 1. Refused from the length.
		{"bomb", []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}, ErrFrameTooLarge, nil},
		{"one above the limit", []byte{0x81, 0x80, 0x04}, ErrFrameTooLarge, nil},
		{"claims more than it holds", unhex(t, "10 08 616263"), nil, ErrMalformed},
		{"claims less than it holds", unhex(t, "02 08 616263"), nil, ErrMalformed},
		{"copy before the start", unhex(t, "0c 08 616263 15 09"), nil, ErrMalformed},
		{"literal past the end", unhex(t, "05 10 6865"), nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := BatchS2Len(tt.block, limit)
			if tt.len != nil {
				assert.ErrorIs(t, err, tt.len)
				return
			}
			require.NoError(t, err)
			assert.ErrorIs(t, DecodeBatchS2(make([]byte, n), tt.block), tt.dec)
		})
	}
	// A buffer of another length than the block claims is refused.
	assert.ErrorIs(t, DecodeBatchS2(make([]byte, 11), unhex(t, "0c 08 616263 15 03")), ErrMalformed)
}

// FuzzDecodeBatchS2 checks that no input makes the decoder panic, write
// past its buffer or allocate beyond the limit, and that what decodes
// re-encodes to the same batch.
func FuzzDecodeBatchS2(f *testing.F) {
	f.Add([]byte{0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x03})
	f.Add(AppendBatchS2(nil, jsonLike(3000)))
	f.Add(AppendBatchS2(nil, randomBytes(300)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}) // 2^35: longer than the prefix
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, block []byte) {
		n, err := BatchS2Len(block, limit)
		if len(block) >= MaxBatchS2Prefix {
			// The prefix alone decides, as a reader that peeks it does.
			pn, perr := BatchS2Len(block[:MaxBatchS2Prefix], limit)
			if pn != n || (perr == nil) != (err == nil) || perr != nil && perr.Error() != err.Error() {
				t.Fatalf("prefix says %d, %v; whole block %d, %v", pn, perr, n, err)
			}
		}
		if err != nil {
			return
		}
		if n < 1 || n > limit {
			t.Fatalf("length %d outside [1, %d]", n, limit)
		}
		// Guard bytes after the buffer catch a write past it.
		mem := make([]byte, n+16)
		for i := n; i < len(mem); i++ {
			mem[i] = 0xA5
		}
		if err := DecodeBatchS2(mem[:n:n], block); err != nil {
			return
		}
		for i := n; i < len(mem); i++ {
			if mem[i] != 0xA5 {
				t.Fatalf("decoder wrote past its buffer at %d", i)
			}
		}
		again := make([]byte, n)
		if err := DecodeBatchS2(again, AppendBatchS2(nil, mem[:n])); err != nil || !bytes.Equal(again, mem[:n]) {
			t.Fatalf("re-encoding does not round-trip: %v", err)
		}
	})
}

// BenchmarkBatchS2 measures compressing and decompressing a 64 KiB batch
// of JSON-like text and of random bytes (b.SetBytes: the plain bytes).
func BenchmarkBatchS2(b *testing.B) {
	for _, in := range []struct {
		name  string
		batch []byte
	}{{"json", jsonLike(64 << 10)}, {"random", randomBytes(64 << 10)}} {
		block := AppendBatchS2(nil, in.batch)
		b.Run(in.name+"/compress", func(b *testing.B) {
			dst := make([]byte, 0, MaxBatchS2Len(len(in.batch)))
			b.SetBytes(int64(len(in.batch)))
			b.ReportAllocs()
			for b.Loop() {
				_ = AppendBatchS2(dst, in.batch)
			}
			b.ReportMetric(float64(len(block))/float64(len(in.batch)), "ratio")
		})
		b.Run(in.name+"/decompress", func(b *testing.B) {
			dst := make([]byte, len(in.batch))
			b.SetBytes(int64(len(in.batch)))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeBatchS2(dst, block); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBatchS2LenFromPrefix checks that MaxBatchS2Prefix bytes are enough
// to decide, as doc.go says a reader does: a length whose uvarint runs
// past them is above any frame limit (ErrFrameTooLarge), whether the
// reader passed the prefix alone or the whole block.
func TestBatchS2LenFromPrefix(t *testing.T) {
	// 2^35, minimally encoded in six bytes.
	long := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00}
	for _, b := range [][]byte{long[:MaxBatchS2Prefix], long[:6], long} {
		_, err := BatchS2Len(b, 1<<32-1)
		assert.ErrorIs(t, err, ErrFrameTooLarge, "% x", b)
	}
	// Fewer bytes than the prefix may still end inside a valid length.
	_, err := BatchS2Len(long[:MaxBatchS2Prefix-1], 1<<32-1)
	assert.ErrorIs(t, err, ErrTruncated)
	// The longest length there is still fits the prefix.
	_, err = BatchS2Len([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0xff}, 64<<10)
	assert.ErrorIs(t, err, ErrFrameTooLarge)
	n, err := BatchS2Len([]byte{0xff, 0xff, 0x03, 0xff}, 64<<10)
	require.NoError(t, err)
	assert.Equal(t, 64<<10-1, n)
}

// TestMaxBatchS2Block: the bound on a block's length refuses no block
// that decodes. The longest blocks there are — 1-byte literals whose
// lengths take 4 bytes — decode at exactly MaxBatchS2Block, and so does
// a Snappy encoder's block for incompressible bytes, a literal every
// 64 KiB, longer than MaxBatchS2Len (the rule is not AppendBatchS2's
// bound). One byte more is malformed.
func TestMaxBatchS2Block(t *testing.T) {
	longest := unhex(t, "03 fc00000000 61 fc00000000 62 fc00000000 63")
	require.Len(t, longest, MaxBatchS2Block(3))
	require.NoError(t, DecodeBatchS2(make([]byte, 3), longest))

	n := 128 << 10
	plain := randomBytes(n)
	snappy := binary.AppendUvarint(nil, uint64(n))
	for off := 0; off < n; off += 64 << 10 {
		snappy = append(snappy, 61<<2, 0xff, 0xff) // literal, 65536 bytes
		snappy = append(snappy, plain[off:off+64<<10]...)
	}
	require.Greater(t, len(snappy), MaxBatchS2Len(n))
	require.LessOrEqual(t, len(snappy), MaxBatchS2Block(n))
	got := make([]byte, n)
	require.NoError(t, DecodeBatchS2(got, snappy))
	require.Equal(t, plain, got)

	overlong := append(bytes.Clone(longest), 0x00)
	assert.ErrorIs(t, DecodeBatchS2(make([]byte, 3), overlong), ErrMalformed)
}

// TestAppendBatchS2RefusesAnEmptyBatch: "the encoders, in turn, refuse
// to write what the decoders would reject" (doc.go), but AppendBatchS2
// wrote an empty batch as a block with plain_len 0, which BatchS2Len
// refuses (the peer closes the connection). It now panics on that
// programming error, as AppendHeader does on its own.
func TestAppendBatchS2RefusesAnEmptyBatch(t *testing.T) {
	assert.Panics(t, func() { AppendBatchS2(nil, nil) })
	assert.Panics(t, func() { AppendBatchS2([]byte("prefix"), []byte{}) })
	assert.NotPanics(t, func() { AppendBatchS2(nil, []byte{1}) })
}
