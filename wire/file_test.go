package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFileHeaderRoundTrip(t *testing.T) {
	for _, h := range []FileHeader{
		{},
		{Verb: math.MaxUint32, ID: math.MaxUint64, CreatedAt: 5, TTL: 4, Length: math.MaxUint64},
		{Verb: 7, ID: 1, CreatedAt: 1_700_000_000_000_000_000, Length: 1 << 30},
		{Verb: math.MaxUint32, ID: math.MaxUint64, CreatedAt: 5, TTL: MaxTTL, Length: math.MaxUint64, Flags: FileUnchecked},
	} {
		b := AppendFileHeader(nil, &h)
		require.LessOrEqual(t, len(b), MaxFileHeaderSize)
		got, err := ReadFileHeader(bytes.NewReader(append(b, "file bytes"...)), make([]byte, MaxFileHeaderSize), CapFileFlags)
		require.NoError(t, err)
		assert.Equal(t, h, got)
	}
}

func TestFileHeaderGolden(t *testing.T) {
	h := FileHeader{Verb: 3, ID: 2, CreatedAt: 1, TTL: 10, Length: 300}
	assert.Equal(t, []byte{
		0x00, 0x0d, // header_len 13
		0x03,                                           // verb
		0x02,                                           // id
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // created_at
		0x0a,       // ttl 10
		0xac, 0x02, // length 300
	}, AppendFileHeader(nil, &h))
}

// TestFileHeaderFieldsAsDocumented pins what doc.go says of the file
// header's fields: a ttl of 0 (always written) means never, one above
// MaxTTL is malformed, a verb above 2^32-1 is malformed, and header_len,
// which does not count itself, is at most MaxFileHeaderSize-2.
func TestFileHeaderFieldsAsDocumented(t *testing.T) {
	// header_len | verb 1 | id 2 | created_at 3 | ttl | length 4
	header := func(verb, ttl []byte) []byte {
		body := append(append([]byte(nil), verb...), 0x02, 0, 0, 0, 0, 0, 0, 0, 0x03)
		body = append(append(body, ttl...), 0x04)
		return append([]byte{0, byte(len(body))}, body...)
	}
	h, err := DecodeFileHeader(header([]byte{0x01}, []byte{0x00}), 0)
	require.NoError(t, err)
	assert.Equal(t, FileHeader{Verb: 1, ID: 2, CreatedAt: 3, Length: 4}, h)
	assert.Zero(t, h.Deadline(100), "ttl 0: never expires")

	maxTTL := binary.AppendUvarint(nil, MaxTTL)
	h, err = DecodeFileHeader(header([]byte{0x01}, maxTTL), 0)
	require.NoError(t, err)
	assert.Equal(t, int64(MaxTTL), h.TTL)
	_, err = DecodeFileHeader(header([]byte{0x01}, binary.AppendUvarint(nil, MaxTTL+1)), 0)
	assert.ErrorIs(t, err, ErrMalformed, "ttl above MaxTTL")
	_, err = DecodeFileHeader(header(binary.AppendUvarint(nil, 1<<32), []byte{0x00}), 0)
	assert.ErrorIs(t, err, ErrMalformed, "verb above 2^32-1")

	_, err = ReadFileHeader(bytes.NewReader(append([]byte{0, MaxFileHeaderSize - 1}, make([]byte, 64)...)), make([]byte, MaxFileHeaderSize), 0)
	assert.ErrorIs(t, err, ErrMalformed, "header_len above MaxFileHeaderSize-2")
}

func TestFileHeaderBadInput(t *testing.T) {
	valid := AppendFileHeader(nil, &FileHeader{Verb: 1, Length: 10})
	for cut := range len(valid) {
		_, err := ReadFileHeader(bytes.NewReader(valid[:cut]), make([]byte, MaxFileHeaderSize), 0)
		require.Error(t, err, "cut at %d", cut)
		if cut > 0 {
			assert.ErrorIs(t, err, ErrTruncated, "cut at %d", cut)
		}
	}
	_, err := ReadFileHeader(bytes.NewReader([]byte{0xff, 0xff}), make([]byte, MaxFileHeaderSize), 0)
	assert.ErrorIs(t, err, ErrMalformed, "a giant header length is refused before reading it")
	trailing := append([]byte(nil), valid...)
	trailing[1]++
	trailing = append(trailing, 0)
	_, err = DecodeFileHeader(trailing, 0)
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestFileResult(t *testing.T) {
	f, err := ReadFileResult(bytes.NewReader(AppendFileResult(nil, nil)))
	require.NoError(t, err)
	assert.Nil(t, f)
	want := Failure{Code: FailureHandlerError, Message: "disk full"}
	f, err = ReadFileResult(bytes.NewReader(AppendFileResult(nil, &want)))
	require.NoError(t, err)
	assert.Equal(t, &want, f)
	_, err = ReadFileResult(bytes.NewReader([]byte{0xff, 0xff}))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ReadFileResult(bytes.NewReader(nil))
	assert.True(t, errors.Is(err, io.EOF), "a result that never came")
}

func FuzzFileHeader(f *testing.F) {
	f.Add(AppendFileHeader(nil, &FileHeader{Verb: 1, ID: 2, CreatedAt: 3, TTL: 4, Length: 5}))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 1})
	f.Add(AppendFileHeader(nil, &FileHeader{Verb: 1, Length: 5, Flags: FileUnchecked}))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Odd lengths are read as on a connection that agreed CapFileFlags.
		caps := Capabilities(len(b)%2) * CapFileFlags
		h, err := ReadFileHeader(bytes.NewReader(b), make([]byte, MaxFileHeaderSize), caps)
		if err != nil {
			return
		}
		again, err := DecodeFileHeader(AppendFileHeader(nil, &h), caps)
		if err != nil {
			t.Fatalf("re-encoding of an accepted header does not decode: %v", err)
		}
		if again != h {
			t.Fatalf("round trip changed %+v into %+v", h, again)
		}
	})
}

// FuzzFileResult: whatever the acceptor sends, ReadFileResult reads no
// more than result_len says, and a result it accepts is the one encoding
// of what it returned.
func FuzzFileResult(f *testing.F) {
	f.Add(AppendFileResult(nil, nil))
	f.Add(AppendFileResult(nil, &Failure{Code: FailureCorrupt, Message: "checksum"}))
	f.Add(AppendFileResult(nil, &Failure{Code: 200, Message: string(bytes.Repeat([]byte("é"), 600))}))
	f.Add([]byte{0x04, 0x04, 0x07})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		failure, err := ReadFileResult(r)
		read := len(b) - r.Len()
		if len(b) >= 2 {
			if n := int(binary.BigEndian.Uint16(b)); read > 2+n {
				t.Fatalf("read %d bytes of a result of %d", read, n)
			}
		}
		if err != nil {
			return
		}
		if again := AppendFileResult(nil, failure); !bytes.Equal(again, b[:read]) {
			t.Fatalf("% x read as %+v, which encodes as % x", b[:read], failure, again)
		}
	})
}
