package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// unhex decodes hex written with spaces between groups.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	require.NoError(t, err)
	return b
}

// crc32c is computed here independently of the package's table.
func crc32c(parts ...[]byte) uint32 {
	return crc32.Checksum(bytes.Join(parts, nil), crc32.MakeTable(crc32.Castagnoli))
}

func TestFrameConstantsArePinned(t *testing.T) {
	// Changing any of these changes the wire format; see doc.go.
	assert.Equal(t, 12, FrameHeaderSize)
	assert.Equal(t, 1<<24-1, MaxStream)
	assert.Equal(t, 1024, MaxBatchMessages)
	assert.Equal(t, 256*1024, DefaultMaxFramePayload)
	assert.Equal(t, FrameKind(0), FrameBatch)
	assert.Equal(t, FrameKind(1), FrameLargeBegin)
	assert.Equal(t, FrameKind(2), FrameLargeMore)
	assert.Equal(t, FrameKind(3), FrameLargeCancel)
	assert.Equal(t, FrameKind(4), FramePing)
	assert.Equal(t, FrameKind(5), FrameGrant)
	assert.Equal(t, FrameKind(6), FrameRefuse)
	assert.Equal(t, FrameKind(7), FrameBeat)
	assert.Equal(t, FrameKind(8), FrameBatchS2)
	assert.Equal(t, Capabilities(1), CapBatchS2)
	assert.Equal(t, Capabilities(2), CapEagerResponses)
	assert.Equal(t, Capabilities(4), CapFileFlags)
	assert.Equal(t, Capabilities(8), CapAcceptorID)
	assert.Equal(t, FileFlags(1), FileUnchecked)
	assert.Equal(t, 5, MaxBatchS2Prefix)
	assert.Equal(t, uint32(0x82F63B78), uint32(crc32.Castagnoli))
}

func TestFrameHeaderGoldenBytes(t *testing.T) {
	tests := []struct {
		name   string
		kind   FrameKind
		stream uint32
		parts  [][]byte
		want   string
	}{
		{
			name: "empty batch", kind: FrameBatch, stream: 0,
			want: "00000000 00 000000 8c28b28a",
		},
		{
			name: "large begin in two parts", kind: FrameLargeBegin, stream: 0x010203,
			parts: [][]byte{[]byte("hel"), []byte("lo")},
			want:  "00000005 01 010203 d2db5f9a",
		},
		{
			name: "grant", kind: FrameGrant, stream: 0x000102,
			want: "00000000 05 000102 " + hex32(crc32c(unhex(t, "00000000 05 000102"))),
		},
		{
			name: "ping", kind: FramePing, stream: 0,
			want: "00000000 04 000000 " + hex32(crc32c(unhex(t, "00000000 04 000000"))),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendFrameHeader(nil, tt.kind, tt.stream, tt.parts...)
			want := unhex(t, tt.want)
			require.Equal(t, want, got)
			// The checksum is CRC32C over header bytes 0..7, then the payload.
			assert.Equal(t, crc32c(append(want[:8:8], bytes.Join(tt.parts, nil)...)), binary.BigEndian.Uint32(got[8:]))
		})
	}
}

func TestFrameHeaderRoundTrip(t *testing.T) {
	atLimit := make([]byte, DefaultMaxFramePayload)
	for i := range atLimit {
		atLimit[i] = byte(i * 7)
	}
	tests := []struct {
		name   string
		kind   FrameKind
		stream uint32
		parts  [][]byte
	}{
		{"batch, no payload", FrameBatch, 0, nil},
		{"batch, empty parts", FrameBatch, 0, [][]byte{{}, nil, {}}},
		{"batch, one part", FrameBatch, 0, [][]byte{[]byte("message")}},
		{"batch, several parts", FrameBatch, 0, [][]byte{[]byte("a"), []byte("bc"), {}, []byte("def")}},
		{"batch at the payload limit", FrameBatch, 0, [][]byte{atLimit}},
		{"large begin, stream 1", FrameLargeBegin, 1, [][]byte{[]byte("header")}},
		{"large cancel", FrameLargeCancel, 77, [][]byte{{4, 0}}},
		{"ping", FramePing, 0, nil},
		{"grant", FrameGrant, 3, nil},
		{"refuse", FrameRefuse, MaxStream, [][]byte{{4, 1}, []byte("x")}},
		{"beat", FrameBeat, 0, [][]byte{{}}},
		{"large more, max stream", FrameLargeMore, MaxStream, [][]byte{atLimit[:1000]}},
		{"large more, stream bytes differ", FrameLargeMore, 0xABCDEF, [][]byte{[]byte("y")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("existing")
			b := AppendFrameHeader(bytes.Clone(prefix), tt.kind, tt.stream, tt.parts...)
			require.Equal(t, prefix, b[:len(prefix)], "AppendFrameHeader must keep dst")
			require.Len(t, b, len(prefix)+FrameHeaderSize)

			payload := bytes.Join(tt.parts, nil)
			h, err := ParseFrameHeader(b[len(prefix):], DefaultMaxFramePayload)
			require.NoError(t, err)
			assert.Equal(t, uint32(len(payload)), h.Length)
			assert.Equal(t, tt.kind, h.Kind)
			assert.Equal(t, tt.stream, h.Stream)
			require.NoError(t, h.Verify(payload))
		})
	}
}

func TestParseFrameHeaderLength(t *testing.T) {
	header := func(length uint32) []byte {
		var b [FrameHeaderSize]byte
		binary.BigEndian.PutUint32(b[:], length)
		return b[:]
	}
	tests := []struct {
		name   string
		length uint32
		max    uint32
		tooBig bool
	}{
		{"empty", 0, DefaultMaxFramePayload, false},
		{"at the limit", DefaultMaxFramePayload, DefaultMaxFramePayload, false},
		{"one above the limit", DefaultMaxFramePayload + 1, DefaultMaxFramePayload, true},
		{"giant", 0xFFFFFFFF, DefaultMaxFramePayload, true},
		{"limit 0 refuses 1", 1, 0, true},
		{"limit 0 accepts 0", 0, 0, false},
		{"largest length, largest limit", 0xFFFFFFFF, 0xFFFFFFFF, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseFrameHeader(header(tt.length), tt.max)
			if tt.tooBig {
				require.ErrorIs(t, err, ErrFrameTooLarge)
				assert.Equal(t, FrameHeader{}, h)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.length, h.Length)
		})
	}
}

func TestParseFrameHeaderErrors(t *testing.T) {
	valid := AppendFrameHeader(nil, FrameLargeMore, 5, []byte("payload"))
	t.Run("truncated at every length", func(t *testing.T) {
		for n := range FrameHeaderSize {
			_, err := ParseFrameHeader(valid[:n], DefaultMaxFramePayload)
			require.ErrorIs(t, err, ErrTruncated, "prefix of %d bytes", n)
		}
	})
	t.Run("unknown kinds", func(t *testing.T) {
		for kind := 8; kind <= 255; kind++ {
			b := bytes.Clone(valid)
			b[4] = byte(kind)
			_, err := ParseFrameHeader(b, DefaultMaxFramePayload)
			require.ErrorIs(t, err, ErrMalformed, "kind %d", kind)
		}
	})
	t.Run("stream where the kind has none", func(t *testing.T) {
		for _, kind := range []string{"00", "04", "07"} {
			for _, stream := range []string{"000001", "010000", "ffffff"} {
				b := unhex(t, "00000000 "+kind+stream+"00000000")
				_, err := ParseFrameHeader(b, DefaultMaxFramePayload)
				require.ErrorIs(t, err, ErrMalformed, "kind %s stream %s", kind, stream)
			}
		}
	})
	t.Run("no stream where the kind needs one", func(t *testing.T) {
		for _, kind := range []string{"01", "02", "03", "05", "06"} {
			b := unhex(t, "00000000 "+kind+"000000 00000000")
			_, err := ParseFrameHeader(b, DefaultMaxFramePayload)
			require.ErrorIs(t, err, ErrMalformed, "kind %s", kind)
		}
	})
	t.Run("payload where the kind has none", func(t *testing.T) {
		for _, kind := range []string{"04000000", "05000001", "07000000"} {
			b := unhex(t, "00000001 "+kind+"00000000")
			_, err := ParseFrameHeader(b, DefaultMaxFramePayload)
			require.ErrorIs(t, err, ErrMalformed, "kind %s", kind)
		}
	})
	t.Run("extra bytes are the payload's", func(t *testing.T) {
		h, err := ParseFrameHeader(append(bytes.Clone(valid), "payload"...), DefaultMaxFramePayload)
		require.NoError(t, err)
		require.NoError(t, h.Verify([]byte("payload")))
	})
}

func TestVerifyDetectsDamage(t *testing.T) {
	payload := []byte("a batch of messages, or part of a large one")
	frame := append(AppendFrameHeader(nil, FrameLargeBegin, 0x00BEEF, payload), payload...)

	// check reports whether a damaged frame is caught, by the header parser
	// or by Verify.
	caught := func(b []byte) bool {
		h, err := ParseFrameHeader(b, DefaultMaxFramePayload)
		if err != nil {
			return true
		}
		return h.Verify(b[FrameHeaderSize:]) != nil
	}
	require.False(t, caught(frame))
	for i := range frame {
		b := bytes.Clone(frame)
		b[i] ^= 0xFF
		assert.True(t, caught(b), "byte %d flipped", i)
		for bit := range 8 {
			b := bytes.Clone(frame)
			b[i] ^= 1 << bit
			assert.True(t, caught(b), "bit %d of byte %d flipped", bit, i)
		}
	}
}

// TestHeaderChecksumContinuesOverPieces: a payload checked a piece at a
// time from HeaderChecksum gives the frame's checksum, as Verify finds.
func TestHeaderChecksumContinuesOverPieces(t *testing.T) {
	payload := []byte("a batch of messages, or part of a large one")
	for _, kind := range []FrameKind{FrameBatchS2, FrameLargeMore} {
		stream := uint32(0)
		if kind.HasStream() {
			stream = 0x00BEEF
		}
		h, err := ParseFrameHeader(AppendFrameHeader(nil, kind, stream, payload), DefaultMaxFramePayload)
		require.NoError(t, err)
		table := crc32.MakeTable(crc32.Castagnoli)
		crc := h.HeaderChecksum()
		for piece := range slices.Chunk(payload, 7) {
			crc = crc32.Update(crc, table, piece)
		}
		assert.Equal(t, h.Checksum, crc, "%v", kind)
		h.Stream ^= 1 // the header's bytes are covered too
		assert.NotEqual(t, h.Checksum, crc32.Update(h.HeaderChecksum(), table, payload), "%v", kind)
	}
}

func TestVerifyErrors(t *testing.T) {
	payload := []byte("payload")
	h, err := ParseFrameHeader(AppendFrameHeader(nil, FrameBatch, 0, payload), DefaultMaxFramePayload)
	require.NoError(t, err)
	tests := []struct {
		name    string
		payload []byte
		h       FrameHeader
		want    error
	}{
		{"short payload", payload[:6], h, ErrTruncated},
		{"empty payload", nil, h, ErrTruncated},
		{"long payload", append(bytes.Clone(payload), 0), h, ErrTruncated},
		{"other payload", []byte("PAYLOAD"), h, ErrChecksum},
		{"other kind", payload, FrameHeader{Length: h.Length, Kind: FrameLargeMore, Checksum: h.Checksum}, ErrChecksum},
		{"other stream", payload, FrameHeader{Length: h.Length, Stream: 1, Checksum: h.Checksum}, ErrChecksum},
		{"other checksum", payload, FrameHeader{Length: h.Length, Checksum: h.Checksum + 1}, ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.h.Verify(tt.payload), tt.want)
		})
	}
}

func TestAppendFrameHeaderPanicsOnUnreadableHeaders(t *testing.T) {
	// 4 GiB of parts without 4 GiB of memory: one slice, repeated.
	mib := make([]byte, 1<<20)
	over4GiB := make([][]byte, 4097)
	for i := range over4GiB {
		over4GiB[i] = mib
	}
	tests := []struct {
		name   string
		kind   FrameKind
		stream uint32
		parts  [][]byte
	}{
		{"unknown kind", FrameKind(9), 1, nil},
		{"large begin without a stream", FrameLargeBegin, 0, nil},
		{"ping with a stream", FramePing, 1, nil},
		{"grant with a payload", FrameGrant, 1, [][]byte{{1}}},
		{"stream above MaxStream", FrameLargeBegin, MaxStream + 1, nil},
		{"stream with high bits only", FrameLargeMore, 1 << 24, nil},
		{"batch with a stream", FrameBatch, 1, nil},
		{"payload over 4 GiB", FrameLargeMore, 1, over4GiB},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Panics(t, func() { AppendFrameHeader(nil, tt.kind, tt.stream, tt.parts...) })
		})
	}
}

func TestFrameCodecDoesNotAllocate(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 1000)
	other := []byte("more")
	buf := make([]byte, 0, 64)
	header := AppendFrameHeader(nil, FrameLargeMore, 9, payload, other)
	whole := append(bytes.Clone(payload), other...)
	var sink error

	assert.Zero(t, testing.AllocsPerRun(100, func() {
		buf = AppendFrameHeader(buf[:0], FrameLargeMore, 9, payload, other)
	}), "AppendFrameHeader")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_, sink = ParseFrameHeader(header, DefaultMaxFramePayload)
	}), "ParseFrameHeader")
	h, err := ParseFrameHeader(header, DefaultMaxFramePayload)
	require.NoError(t, err)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		sink = h.Verify(whole)
	}), "Verify")
	require.NoError(t, sink)
}

func FuzzFrameHeader(f *testing.F) {
	f.Add(AppendFrameHeader(nil, FrameBatch, 0))
	f.Add(append(AppendFrameHeader(nil, FrameBatch, 0, []byte("abc")), "abc"...))
	f.Add(append(AppendFrameHeader(nil, FrameLargeBegin, 7, []byte("header")), "header"...))
	f.Add(AppendFrameHeader(nil, FrameGrant, 7))
	f.Add(append(AppendFrameHeader(nil, FrameRefuse, 9, []byte{4, 0}), 4, 0))
	f.Add(append(AppendFrameHeader(nil, FrameLargeMore, MaxStream, []byte{0}), 0))
	f.Add(unhex(f, "ffffffff 02 ffffff 00000000"))
	f.Add(unhex(f, "00000001 07 000000 00000000 00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever arrives: no panic, and what passes re-encodes exactly.
		h, err := ParseFrameHeader(data, DefaultMaxFramePayload)
		if err == nil {
			require.LessOrEqual(t, h.Length, uint32(DefaultMaxFramePayload))
			require.LessOrEqual(t, h.Stream, uint32(MaxStream))
			if rest := data[FrameHeaderSize:]; uint64(len(rest)) >= uint64(h.Length) {
				payload := rest[:h.Length]
				if h.Verify(payload) == nil {
					require.Equal(t, data[:FrameHeaderSize], AppendFrameHeader(nil, h.Kind, h.Stream, payload))
				}
			}
		}

		// A frame built from the input reads back as written.
		if len(data) < 4 {
			return
		}
		kind := FrameKind(data[0] % 8)
		stream := uint32(data[1])<<16 | uint32(data[2])<<8 | uint32(data[3])
		switch {
		case !kind.HasStream():
			stream = 0
		case stream == 0:
			stream = 1
		}
		payload := data[4:]
		if kind.Empty() {
			payload = nil
		}
		half := len(payload) / 2
		header := AppendFrameHeader(nil, kind, stream, payload[:half], payload[half:])
		got, err := ParseFrameHeader(header, uint32(len(payload)))
		require.NoError(t, err)
		require.Equal(t, FrameHeader{Length: uint32(len(payload)), Kind: kind, Stream: stream, Checksum: got.Checksum}, got)
		require.NoError(t, got.Verify(payload))
	})
}

func hex32(v uint32) string { return fmt.Sprintf("%08x", v) }

// TestFrameKindSides checks FromAcceptor and FromInitiator against the
// table of kinds in doc.go: in version 3 the acceptor answers requests
// on the back channel (FrameBatch, large responses) and the initiator
// grants or refuses them, so most kinds travel both ways.
func TestFrameKindSides(t *testing.T) {
	tests := []struct {
		kind                   FrameKind
		fromInitiator, fromAcc bool
	}{
		{FrameBatch, true, true},      // messages; responses
		{FrameLargeBegin, true, true}, // large messages; large responses
		{FrameLargeMore, true, true},
		{FrameLargeCancel, true, true},
		{FramePing, true, false},
		{FrameGrant, true, true}, // of large responses; of large messages
		{FrameRefuse, true, true},
		{FrameBeat, false, true},
		{FrameBatchS2, true, true},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.fromAcc, tt.kind.FromAcceptor(), "%v from the acceptor", tt.kind)
		assert.Equal(t, tt.fromInitiator, tt.kind.FromInitiator(), "%v from the initiator", tt.kind)
	}
	assert.False(t, FrameKind(9).FromAcceptor(), "an unknown kind travels neither way")
	assert.False(t, FrameKind(9).FromInitiator(), "an unknown kind travels neither way")
}
