package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStreamConstantsArePinned(t *testing.T) {
	// Changing any of these changes the wire format; see doc.go.
	assert.Equal(t, 64*1024, MaxStreamChunk)
	assert.Equal(t, 4, StreamChunkHeaderSize)
	assert.Equal(t, 0, StreamAccepted)
	assert.Equal(t, 5, MaxStreamOpenSize, "derived: the longest shortest uvarint of a uint32")
}

func TestStreamGoldenBytes(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"open verb 0", AppendStreamOpen(nil, 0), "00"},
		{"open verb 20", AppendStreamOpen(nil, 20), "14"},
		{"open verb 300", AppendStreamOpen(nil, 300), "ac02"},
		{"open verb 2^32-1", AppendStreamOpen(nil, math.MaxUint32), "ffffffff0f"},
		{"accept", AppendStreamAccept(nil), "00"},
		{"refuse unknown verb", AppendStreamRefuse(nil, FailureUnknownVerb), "01"},
		{"refuse overloaded", AppendStreamRefuse(nil, FailureOverloaded), "04"},
		{"end marker", AppendStreamChunkHeader(nil, 0), "00000000"},
		{"chunk of 5", AppendStreamChunkHeader(nil, 5), "00000005"},
		{"largest chunk", AppendStreamChunkHeader(nil, MaxStreamChunk), "00010000"},
		{"appends", AppendStreamChunkHeader([]byte{0xaa}, 1), "aa 00000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, unhex(t, tt.want), tt.got)
		})
	}
}

// The bytes of one whole stream, as doc.go draws them: the opener sends
// verb 20 and "hello" and ends; the acceptor accepts, sends "ok" and ends.
var (
	goldenOpenerBytes   = "14  00000005 68656c6c6f  00000000"
	goldenAcceptorBytes = "00  00000002 6f6b  00000000"
)

func TestStreamGoldenExchange(t *testing.T) {
	opener := AppendStreamOpen(nil, 20)
	opener = append(AppendStreamChunkHeader(opener, 5), "hello"...)
	opener = AppendStreamChunkHeader(opener, 0)
	assert.Equal(t, unhex(t, goldenOpenerBytes), opener)

	acceptor := AppendStreamAccept(nil)
	acceptor = append(AppendStreamChunkHeader(acceptor, 2), "ok"...)
	acceptor = AppendStreamChunkHeader(acceptor, 0)
	assert.Equal(t, unhex(t, goldenAcceptorBytes), acceptor)

	verb, chunks, n, err := decodeStreamSide(opener, true)
	require.NoError(t, err)
	assert.Equal(t, uint32(20), verb)
	assert.Equal(t, [][]byte{[]byte("hello")}, chunks)
	assert.Equal(t, len(opener), n)
	code, chunks, n, err := decodeStreamSide(acceptor, false)
	require.NoError(t, err)
	assert.Equal(t, uint32(StreamAccepted), code)
	assert.Equal(t, [][]byte{[]byte("ok")}, chunks)
	assert.Equal(t, len(acceptor), n)
}

func TestStreamOpenRoundTrip(t *testing.T) {
	for _, verb := range []uint32{0, 1, 127, 128, 16383, 16384, 1 << 21, 1 << 28, math.MaxUint32} {
		b := AppendStreamOpen([]byte("prefix"), verb)
		require.Equal(t, "prefix", string(b[:6]))
		enc := b[6:]
		assert.LessOrEqual(t, len(enc), MaxStreamOpenSize)

		got, n, err := DecodeStreamOpen(append(bytes.Clone(enc), "after"...))
		require.NoError(t, err, "verb %d", verb)
		assert.Equal(t, verb, got)
		assert.Equal(t, len(enc), n)

		src := bytes.NewReader(append(bytes.Clone(enc), "after"...))
		got, err = ReadStreamOpen(src)
		require.NoError(t, err, "verb %d", verb)
		assert.Equal(t, verb, got)
		assert.Equal(t, len("after"), src.Len(), "nothing past the verb is read")
	}
}

func TestStreamOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"ends inside the verb", "80", ErrTruncated},
		{"ends inside a 5-byte verb", "ffffffff", ErrTruncated},
		{"not the shortest encoding", "8100", ErrMalformed},
		{"zero not the shortest", "80808000", ErrMalformed},
		{"verb 2^32", "8080808010", ErrMalformed},
		{"verb 2^35-1", "ffffffff7f", ErrMalformed},
		{"longer than 5 bytes", "ffffffffff01", ErrMalformed},
		{"longer than 5 bytes, cut", "8080808080", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := unhex(t, tt.in)
			_, _, err := DecodeStreamOpen(in)
			require.ErrorIs(t, err, tt.want)

			src := bytes.NewReader(in)
			_, err = ReadStreamOpen(src)
			if len(in) == 0 {
				require.ErrorIs(t, err, io.EOF, "nothing sent")
				return
			}
			require.ErrorIs(t, err, tt.want)
			if errors.Is(err, ErrTruncated) {
				require.ErrorIs(t, err, io.ErrUnexpectedEOF)
			}
			assert.LessOrEqual(t, int(src.Size())-src.Len(), MaxStreamOpenSize, "reads no more than the bound")
		})
	}
}

func TestReadStreamOpenReaderError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ReadStreamOpen(oneByteReader{iotest.ErrReader(boom)})
	require.ErrorIs(t, err, boom)
	_, err = ReadStreamOpen(oneByteReader{io.MultiReader(bytes.NewReader([]byte{0x80}), iotest.ErrReader(boom))})
	require.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, ErrTruncated, "a failing reader is not a peer's truncation")
}

// oneByteReader reads one byte at a time from r.
type oneByteReader struct{ r io.Reader }

func (b oneByteReader) ReadByte() (byte, error) {
	var one [1]byte
	_, err := io.ReadFull(b.r, one[:])
	return one[0], err
}

func TestStreamStatus(t *testing.T) {
	code, refused := ParseStreamStatus(StreamAccepted)
	assert.False(t, refused)
	assert.Equal(t, FailureCode(0), code)
	for _, c := range []FailureCode{FailureUnknownVerb, FailureOverloaded, FailureCode(200)} {
		b := AppendStreamRefuse(nil, c)
		require.Len(t, b, 1)
		code, refused := ParseStreamStatus(b[0])
		assert.True(t, refused)
		assert.Equal(t, c, code, "unknown codes are passed up as they are")
	}
	assert.Panics(t, func() { AppendStreamRefuse(nil, FailureUnknown) }, "would read as accepted")
}

func TestStreamChunkHeaderRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 4 << 10, MaxStreamChunk - 1, MaxStreamChunk} {
		b := AppendStreamChunkHeader(nil, n)
		require.Len(t, b, StreamChunkHeaderSize)
		got, err := ParseStreamChunkHeader(append(b, "payload"...))
		require.NoError(t, err)
		assert.Equal(t, n, got)
	}
}

func TestParseStreamChunkHeaderErrors(t *testing.T) {
	for _, in := range []string{"", "00", "000000"} {
		_, err := ParseStreamChunkHeader(unhex(t, in))
		assert.ErrorIs(t, err, ErrTruncated, "%q", in)
	}
	for _, in := range []string{"00010001", "00100000", "80000000", "ffffffff"} {
		_, err := ParseStreamChunkHeader(unhex(t, in))
		assert.ErrorIs(t, err, ErrMalformed, "%q", in)
	}
}

func TestAppendStreamChunkHeaderPanicsOnUnreadableChunks(t *testing.T) {
	for _, n := range []int{-1, MaxStreamChunk + 1, math.MaxInt} {
		assert.Panics(t, func() { AppendStreamChunkHeader(nil, n) }, "chunk of %d bytes", n)
	}
}

func TestStreamChunkCodecDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, StreamChunkHeaderSize)
	header := AppendStreamChunkHeader(nil, 1000)
	var sink error
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		buf = AppendStreamChunkHeader(buf[:0], 1000)
	}), "AppendStreamChunkHeader")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_, sink = ParseStreamChunkHeader(header)
	}), "ParseStreamChunkHeader")
	require.NoError(t, sink)
}

// decodeStreamSide decodes what one side writes into a stream, as a reader
// of it would: the opening (opener) or status byte (acceptor), then chunks
// up to the end marker. It returns the verb (opener) or refusal code
// (acceptor, StreamAccepted when accepted), the chunks' data and the bytes
// taken.
func decodeStreamSide(b []byte, opener bool) (verbOrCode uint32, chunks [][]byte, n int, err error) {
	if opener {
		verb, k, err := DecodeStreamOpen(b)
		if err != nil {
			return 0, nil, 0, err
		}
		verbOrCode, n = verb, k
	} else {
		if len(b) == 0 {
			return 0, nil, 0, ErrTruncated
		}
		code, refused := ParseStreamStatus(b[0])
		if refused {
			return uint32(code), nil, 1, nil // nothing follows a refusal
		}
		n = 1
	}
	for {
		size, err := ParseStreamChunkHeader(b[n:])
		if err != nil {
			return 0, nil, 0, err
		}
		n += StreamChunkHeaderSize
		if size == 0 {
			return verbOrCode, chunks, n, nil
		}
		if len(b)-n < size {
			return 0, nil, 0, ErrTruncated
		}
		chunks = append(chunks, b[n:n+size])
		n += size
	}
}

// encodeStreamSide writes what decodeStreamSide reads.
func encodeStreamSide(verbOrCode uint32, chunks [][]byte, opener bool) []byte {
	var b []byte
	switch {
	case opener:
		b = AppendStreamOpen(b, verbOrCode)
	case verbOrCode != StreamAccepted:
		return AppendStreamRefuse(b, FailureCode(verbOrCode))
	default:
		b = AppendStreamAccept(b)
	}
	for _, c := range chunks {
		b = append(AppendStreamChunkHeader(b, len(c)), c...)
	}
	return AppendStreamChunkHeader(b, 0)
}

func FuzzStream(f *testing.F) {
	f.Add(unhex(f, goldenOpenerBytes))
	f.Add(unhex(f, goldenAcceptorBytes))
	f.Add(unhex(f, "ffffffff0f 00000000"))
	f.Add(unhex(f, "ac02 00000001 61 00000002 6263 00000000"))
	f.Add(unhex(f, "01"))
	f.Add(unhex(f, "04"))
	f.Add(unhex(f, "00 00010001"))
	f.Add(unhex(f, "8100 00000000"))
	f.Add(unhex(f, "8080808010"))
	f.Add(unhex(f, "ffffffffff01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever arrives: no panic, and what passes re-encodes exactly.
		verb, n, err := DecodeStreamOpen(data)
		src := bytes.NewReader(data)
		readVerb, readErr := ReadStreamOpen(src)
		read := len(data) - src.Len()
		require.LessOrEqual(t, read, MaxStreamOpenSize)
		if err == nil {
			require.NoError(t, readErr)
			require.Equal(t, verb, readVerb)
			require.Equal(t, n, read, "ReadStreamOpen reads exactly the verb")
			require.Equal(t, data[:n], AppendStreamOpen(nil, verb))
		} else {
			require.Error(t, readErr)
			require.Equal(t, errors.Is(err, ErrMalformed), errors.Is(readErr, ErrMalformed))
		}

		if len(data) > 0 {
			code, refused := ParseStreamStatus(data[0])
			if refused {
				require.Equal(t, data[:1], AppendStreamRefuse(nil, code))
			} else {
				require.Equal(t, data[:1], AppendStreamAccept(nil))
			}
		}

		if size, err := ParseStreamChunkHeader(data); err == nil {
			require.LessOrEqual(t, size, MaxStreamChunk)
			require.Equal(t, data[:StreamChunkHeaderSize], AppendStreamChunkHeader(nil, size))
		}

		// One side's whole stream: what decodes re-encodes exactly.
		for _, opener := range []bool{true, false} {
			v, chunks, n, err := decodeStreamSide(data, opener)
			if err != nil {
				continue
			}
			require.Equal(t, data[:n], encodeStreamSide(v, chunks, opener))
		}
	})
}
