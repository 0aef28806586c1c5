package wire

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testMaxPayload = 128 << 20 // the transport's default message limit

func TestMessageConstantsArePinned(t *testing.T) {
	// Changing any of these changes the wire format; see doc.go.
	assert.Equal(t, MessageFlags(0x01), FlagExpectsResponse)
	assert.Equal(t, MessageFlags(0x02), FlagResponse)
	assert.Equal(t, MessageFlags(0x04), FlagFailure)
	assert.Equal(t, MessageFlags(0x08), FlagParams)
	assert.Equal(t, MessageFlags(0x10), FlagTTL)
	assert.Equal(t, MessageFlags(0x20), FlagCancel)
	assert.Equal(t, MessageFlags(0x3F), knownFlags)
	assert.Equal(t, 4096, MaxParamsSize)
	assert.Equal(t, uint64(1<<62), uint64(MaxTTL))
	assert.Equal(t, 4135, MaxHeaderSize)
}

func TestHeaderGoldenBytes(t *testing.T) {
	const created = 0x0102030405060708
	tests := []struct {
		name string
		h    Header
		want string
	}{
		{
			name: "zero",
			h:    Header{},
			want: "00 00 00 0000000000000000 00",
		},
		{
			name: "request with params",
			h: Header{
				Flags: FlagExpectsResponse | FlagParams | FlagTTL, ID: 300, Verb: 7,
				CreatedAt: created, TTL: 1000,
				Params:        AppendParam(nil, "k", []byte("v")),
				PayloadLength: 5,
			},
			// flags | id 300 | verb 7 | created_at | ttl 1000 | params_len 4 | params | payload_len 5
			want: "19 ac02 07 0102030405060708 00000000000003e8 04 016b0176 05",
		},
		{
			name: "failure response, extremes",
			h: Header{
				Flags: FlagResponse | FlagFailure, ID: math.MaxUint64, Verb: math.MaxUint32,
				CreatedAt: -1, PayloadLength: math.MaxUint32,
			},
			want: "06 ffffffffffffffffff01 ffffffff0f ffffffffffffffff ffffffff0f",
		},
		{
			name: "cancel",
			h:    Header{Flags: FlagCancel, ID: 5, Verb: 2, CreatedAt: created},
			want: "20 05 02 0102030405060708 00",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.want)
			require.Equal(t, want, AppendHeader(nil, &tt.h))
			got, n, err := DecodeHeader(want, math.MaxUint32)
			require.NoError(t, err)
			assert.Equal(t, len(want), n)
			assert.Equal(t, tt.h, got)
		})
	}
}

// TestHeaderDecodeReusesItsHeader decodes headers one after another into
// one Header, as a reader does for a batch: nothing of a header with a time
// to live and parameters may stay behind in the next one, and an error
// leaves the Header zero.
func TestHeaderDecodeReusesItsHeader(t *testing.T) {
	headers := []Header{
		{Flags: FlagExpectsResponse | FlagParams | FlagTTL, ID: 300, Verb: 7, CreatedAt: 9, TTL: 1000,
			Params: AppendParam(nil, "k", []byte("v")), PayloadLength: 5},
		{ID: 1, Verb: 2, CreatedAt: 3, PayloadLength: 4},
		{Flags: FlagResponse | FlagFailure, ID: math.MaxUint64, Verb: math.MaxUint32, CreatedAt: -1, PayloadLength: 200},
		{Flags: FlagCancel, ID: 5, Verb: 2, CreatedAt: 8},
	}
	var h Header
	for _, want := range headers {
		enc := AppendHeader(nil, &want)
		n, err := h.Decode(enc, math.MaxUint32)
		require.NoError(t, err)
		assert.Equal(t, len(enc), n)
		assert.Equal(t, want, h)
	}
	_, err := h.Decode(unhex(t, "40"), math.MaxUint32) // an unknown flag
	require.ErrorIs(t, err, ErrMalformed)
	assert.Equal(t, Header{}, h)
}

func TestHeaderRoundTrip(t *testing.T) {
	params := AppendParam(AppendParam(nil, "traceparent", []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")), "tracestate", []byte("congo=t61rcWkgMzE"))
	fullParams := bytes.Repeat([]byte{0}, MaxParamsSize) // 2048 pairs of empty key and value
	tests := []struct {
		name string
		in   Header
		// want is the decoded header when it differs from in.
		want *Header
	}{
		{name: "zero", in: Header{}},
		{name: "ID 0", in: Header{ID: 0, Verb: 1}},
		{name: "ID max", in: Header{ID: math.MaxUint64}},
		{name: "verb max", in: Header{Verb: math.MaxUint32}},
		{name: "request", in: Header{Flags: FlagExpectsResponse, ID: 1, Verb: 2}},
		{name: "response", in: Header{Flags: FlagResponse, ID: 1, Verb: 2}},
		{name: "failure response", in: Header{Flags: FlagResponse | FlagFailure, ID: 1}},
		{name: "cancel", in: Header{Flags: FlagCancel, ID: 1, Verb: 2}},
		{name: "no expiry", in: Header{CreatedAt: 1_700_000_000_000_000_000, TTL: 0}},
		{name: "a ttl", in: Header{CreatedAt: 1_700_000_000_000_000_000, TTL: 500_000_000}},
		{name: "negative creation", in: Header{CreatedAt: -5_000, TTL: 1_000}},
		{name: "ttl of 1 ns", in: Header{TTL: 1}},
		{name: "ttl at its bound", in: Header{CreatedAt: 10, TTL: MaxTTL}},
		{
			name: "a past expiry arrives expired",
			in:   Header{CreatedAt: 1000, TTL: -7},
			want: &Header{CreatedAt: 1000, TTL: 1},
		},
		{
			name: "ttl beyond its bound is cut",
			in:   Header{TTL: math.MaxInt64},
			want: &Header{TTL: MaxTTL},
		},
		{
			name: "FlagTTL without a ttl is dropped",
			in:   Header{Flags: FlagTTL | FlagResponse},
			want: &Header{Flags: FlagResponse},
		},
		{name: "params", in: Header{Flags: FlagExpectsResponse, ID: 9, Params: params, PayloadLength: 10}},
		{name: "params at their limit", in: Header{Params: fullParams}},
		{
			name: "empty params are absent",
			in:   Header{Params: []byte{}, PayloadLength: 1},
			want: &Header{PayloadLength: 1},
		},
		{
			name: "FlagParams without params is dropped",
			in:   Header{Flags: FlagParams | FlagExpectsResponse},
			want: &Header{Flags: FlagExpectsResponse},
		},
		{name: "payload at the limit", in: Header{PayloadLength: testMaxPayload}},
		{
			name: "everything",
			in: Header{
				Flags: FlagResponse | FlagFailure, ID: math.MaxUint64, Verb: math.MaxUint32,
				CreatedAt: math.MaxInt64, TTL: MaxTTL,
				Params: params, PayloadLength: testMaxPayload,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.in
			if tt.want != nil {
				want = *tt.want
			}
			if len(want.Params) > 0 {
				want.Flags |= FlagParams
			}
			if want.TTL != 0 {
				want.Flags |= FlagTTL
			}
			b := AppendHeader([]byte("prefix"), &tt.in)
			require.Equal(t, []byte("prefix"), b[:6])
			enc := b[6:]
			require.LessOrEqual(t, len(enc), MaxHeaderSize)

			// The payload follows the header; DecodeHeader stops before it.
			got, n, err := DecodeHeader(append(bytes.Clone(enc), "payload"...), testMaxPayload)
			require.NoError(t, err)
			assert.Equal(t, len(enc), n)
			assert.Equal(t, want, got)

			// The decoded header is a fixed point.
			assert.Equal(t, enc, AppendHeader(nil, &got), "re-encoding")
		})
	}
}

func TestDecodeHeaderPayloadLimit(t *testing.T) {
	tests := []struct {
		name   string
		length uint32
		max    uint32
		tooBig bool
	}{
		{name: "empty", length: 0, max: 0},
		{name: "at the limit", length: testMaxPayload, max: testMaxPayload},
		{name: "one above the limit", length: testMaxPayload + 1, max: testMaxPayload, tooBig: true},
		{name: "giant", length: math.MaxUint32, max: testMaxPayload, tooBig: true},
		{name: "largest under the largest limit", length: math.MaxUint32, max: math.MaxUint32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendHeader(nil, &Header{ID: 1, PayloadLength: tt.length})
			h, n, err := DecodeHeader(b, tt.max)
			if tt.tooBig {
				require.ErrorIs(t, err, ErrMessageTooLarge)
				assert.Zero(t, n)
				assert.Equal(t, Header{}, h)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.length, h.PayloadLength)
		})
	}
	t.Run("payload length above 32 bits", func(t *testing.T) {
		b := binary.AppendUvarint(unhex(t, "00 01 02 0000000000000000"), 1<<32)
		_, _, err := DecodeHeader(b, math.MaxUint32)
		require.ErrorIs(t, err, ErrMessageTooLarge)
	})
}

func TestDecodeHeaderTruncatedAtEveryLength(t *testing.T) {
	headers := []Header{
		{},
		{Flags: FlagExpectsResponse, ID: math.MaxUint64, Verb: math.MaxUint32, CreatedAt: 1, TTL: MaxTTL, PayloadLength: math.MaxUint32},
		{ID: 300, Params: AppendParam(AppendParam(nil, "a", []byte("b")), "traceparent", bytes.Repeat([]byte("x"), 200)), PayloadLength: 70000},
	}
	for _, h := range headers {
		b := AppendHeader(nil, &h)
		for n := range len(b) {
			_, _, err := DecodeHeader(b[:n], math.MaxUint32)
			require.ErrorIs(t, err, ErrTruncated, "header %+v cut to %d of %d bytes", h, n, len(b))
		}
	}
}

func TestDecodeHeaderErrors(t *testing.T) {
	const created = "0000000000000000"
	overflow := "ffffffffffffffffff02" // more than 64 bits
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"flag bit 6", "40 00 00" + created + "00", ErrMalformed},
		{"flag bit 7", "80 00 00" + created + "00", ErrMalformed},
		{"request and response", "03 00 00" + created + "00", ErrMalformed},
		{"request and cancel", "21 00 00" + created + "00", ErrMalformed},
		{"response and cancel", "22 00 00" + created + "00", ErrMalformed},
		{"failure without response", "04 00 00" + created + "00", ErrMalformed},
		{"failure on a request", "05 00 00" + created + "00", ErrMalformed},
		{"a cancel with a payload", "20 00 00" + created + "01", ErrMalformed},
		{"id overflows", "00" + overflow + "00" + created + "00", ErrMalformed},
		{"id of 11 bytes", "00 8080808080808080808000 00" + created + "00", ErrMalformed},
		{"verb above 32 bits", "00 00 8080808010" + created + "00", ErrMalformed},
		{"verb overflows", "00 00" + overflow + created + "00", ErrMalformed},
		{"ttl of 0", "10 00 00" + created + "0000000000000000 00", ErrMalformed},
		{"ttl above 2^62", "10 00 00" + created + "4000000000000001 00", ErrMalformed},
		{"ttl cut short", "10 00 00" + created + "00000000", ErrTruncated},
		{"empty params", "08 00 00" + created + "00 00", ErrMalformed},
		{"params above the limit", "08 00 00" + created + "8120" + "00", ErrMalformed},
		{"params length overflows", "08 00 00" + created + overflow, ErrMalformed},
		{"param key overruns its block", "08 00 00" + created + "02 05 61 00", ErrMalformed},
		{"param value overruns its block", "08 00 00" + created + "03 01 61 01 00", ErrMalformed},
		{"param value missing", "08 00 00" + created + "02 01 61 00", ErrMalformed},
		{"param length overflows", "08 00 00" + created + "0a" + overflow + "00", ErrMalformed},
		{"payload length overflows", "00 00 00" + created + overflow, ErrMalformed},
		// Varints must be as short as their value allows.
		{"id not minimal", "00 8000 00" + created + "00", ErrMalformed},
		{"verb not minimal", "00 00 ff00" + created + "00", ErrMalformed},
		{"params length not minimal", "08 00 00" + created + "8200 0000 00", ErrMalformed},
		{"param key length not minimal", "08 00 00" + created + "04 8100 61 00 00", ErrMalformed},
		{"payload length not minimal", "00 00 00" + created + "808000", ErrMalformed},
		{"empty", "", ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := DecodeHeader(unhex(t, tt.in), math.MaxUint32)
			require.ErrorIs(t, err, tt.want)
			assert.Zero(t, n)
			assert.Equal(t, Header{}, h)
		})
	}
}

func TestAppendHeaderPanicsOnUndecodableHeaders(t *testing.T) {
	tests := []struct {
		name string
		h    Header
	}{
		{"unknown flag", Header{Flags: 0x40}},
		{"request and response", Header{Flags: FlagExpectsResponse | FlagResponse}},
		{"request and cancel", Header{Flags: FlagExpectsResponse | FlagCancel}},
		{"a cancel with a payload", Header{Flags: FlagCancel, PayloadLength: 1}},
		{"failure without response", Header{Flags: FlagFailure}},
		{"params above the limit", Header{Params: make([]byte, MaxParamsSize+1)}},
		{"malformed params", Header{Params: []byte{5, 'a'}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Panics(t, func() { AppendHeader(nil, &tt.h) })
		})
	}
}

func TestMaxHeaderSizeHoldsTheLongestHeader(t *testing.T) {
	// The longest encoding of each field at once. A param block of exactly
	// MaxParamsSize bytes: one pair whose value takes the rest.
	params := AppendParam(nil, "k", make([]byte, MaxParamsSize-4))
	require.Len(t, params, MaxParamsSize)
	h := Header{
		Flags: FlagResponse | FlagFailure, ID: math.MaxUint64, Verb: math.MaxUint32,
		CreatedAt: math.MinInt64, TTL: MaxTTL,
		Params: params, PayloadLength: math.MaxUint32,
	}
	b := AppendHeader(nil, &h)
	assert.Equal(t, len(b), MaxHeaderSize, "the bound is tight")
	_, n, err := DecodeHeader(b, math.MaxUint32)
	require.NoError(t, err)
	assert.Equal(t, len(b), n)
}

func TestHeaderDeadline(t *testing.T) {
	tests := []struct {
		name    string
		ttl     int64
		arrived int64
		want    int64
	}{
		{"never", 0, 100, 0},
		{"arrival plus ttl", 50, 100, 150},
		{"whatever the sender's clock said", 50, -1_000_000, -999_950},
		{"saturates", MaxTTL, math.MaxInt64 - 5, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Header{CreatedAt: 1 << 60, TTL: tt.ttl}
			assert.Equal(t, tt.want, h.Deadline(tt.arrived))
		})
	}
}

func TestSetTTL(t *testing.T) {
	h := Header{Flags: FlagExpectsResponse, ID: 300, Verb: 70000, CreatedAt: 9, TTL: 5_000,
		Params: AppendParam(nil, "k", []byte("v")), PayloadLength: 3}
	b := append(AppendHeader(nil, &h), "abc"...)
	for _, c := range []struct{ set, want int64 }{{1_234, 1_234}, {0, 1}, {-5, 1}, {math.MaxInt64, MaxTTL}} {
		require.NoError(t, SetTTL(b, c.set))
		got, n, err := DecodeHeader(b, 3)
		require.NoError(t, err)
		assert.Equal(t, c.want, got.TTL)
		assert.Equal(t, "abc", string(b[n:]), "nothing else moved")
		got.TTL = h.TTL
		assert.Equal(t, AppendHeader(nil, &h), AppendHeader(nil, &got))
	}
	require.ErrorIs(t, SetTTL(AppendHeader(nil, &Header{ID: 1}), 5), ErrMalformed, "no ttl to set")
	require.ErrorIs(t, SetTTL(b[:12], 5), ErrTruncated)
	require.ErrorIs(t, SetTTL(nil, 5), ErrTruncated)
}

func TestParams(t *testing.T) {
	block := AppendParam(nil, "traceparent", []byte("00-abc-def-01"))
	block = AppendParam(block, "", nil)
	block = AppendParam(block, "empty", []byte{})
	block = AppendParam(block, "traceparent", []byte("second"))
	block = AppendParam(block, "big", bytes.Repeat([]byte("v"), 300))

	type pair struct{ key, value string }
	var pairs []pair
	require.NoError(t, RangeParams(block, func(k, v []byte) bool {
		pairs = append(pairs, pair{string(k), string(v)})
		return true
	}))
	assert.Equal(t, []pair{
		{"traceparent", "00-abc-def-01"}, {"", ""}, {"empty", ""},
		{"traceparent", "second"}, {"big", string(bytes.Repeat([]byte("v"), 300))},
	}, pairs)

	lookups := []struct {
		key   string
		want  string
		found bool
	}{
		{"traceparent", "00-abc-def-01", true}, // the first of a repeated key
		{"", "", true},
		{"empty", "", true},
		{"missing", "", false},
		{"Traceparent", "", false},
	}
	for _, l := range lookups {
		v, ok := Param(block, l.key)
		assert.Equal(t, l.found, ok, l.key)
		assert.Equal(t, l.want, string(v), l.key)
	}

	t.Run("stops when told", func(t *testing.T) {
		calls := 0
		require.NoError(t, RangeParams(block, func(_, _ []byte) bool { calls++; return calls < 2 }))
		assert.Equal(t, 2, calls)
	})
	t.Run("empty block", func(t *testing.T) {
		require.NoError(t, RangeParams(nil, func(_, _ []byte) bool { t.Fatal("called"); return true }))
		_, ok := Param(nil, "")
		assert.False(t, ok)
	})
	t.Run("values alias the block", func(t *testing.T) {
		b := AppendParam(nil, "k", []byte("v"))
		v, ok := Param(b, "k")
		require.True(t, ok)
		b[len(b)-1] = 'w'
		assert.Equal(t, "w", string(v))
	})
	t.Run("malformed blocks", func(t *testing.T) {
		good := AppendParam(nil, "key", []byte("value"))
		for n := 1; n < len(good); n++ {
			err := RangeParams(good[:n], func(_, _ []byte) bool { return true })
			require.ErrorIs(t, err, ErrMalformed, "cut to %d bytes", n)
		}
		for _, bad := range []string{"ffffffffffffffffffff02", "8000", "05 61", "01 61 ff"} {
			err := RangeParams(unhex(t, bad), func(_, _ []byte) bool { return true })
			require.ErrorIs(t, err, ErrMalformed, bad)
		}
	})
	t.Run("lookup before damage still succeeds", func(t *testing.T) {
		b := append(AppendParam(nil, "k", []byte("v")), 0x05)
		v, ok := Param(b, "k")
		assert.True(t, ok)
		assert.Equal(t, "v", string(v))
		_, ok = Param(b, "other")
		assert.False(t, ok)
	})
}

func TestHeaderCodecDoesNotAllocate(t *testing.T) {
	h := Header{
		Flags: FlagExpectsResponse, ID: 123456789, Verb: 42,
		CreatedAt: 1_700_000_000_000_000_000, TTL: 2_000_000_000,
		Params:        AppendParam(nil, "traceparent", []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")),
		PayloadLength: 4096,
	}
	buf := make([]byte, 0, MaxHeaderSize)
	enc := AppendHeader(nil, &h)
	var sink error

	assert.Zero(t, testing.AllocsPerRun(100, func() {
		buf = AppendHeader(buf[:0], &h)
	}), "AppendHeader")
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_, _, sink = DecodeHeader(enc, testMaxPayload)
	}), "DecodeHeader")
	require.NoError(t, sink)
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_, _ = Param(h.Params, "traceparent")
	}), "Param")
}

func FuzzDecodeHeader(f *testing.F) {
	seeds := []Header{
		{},
		{Flags: FlagExpectsResponse, ID: 1, Verb: 2, CreatedAt: 3, TTL: 4, PayloadLength: 5},
		{Flags: FlagResponse | FlagFailure, ID: math.MaxUint64, Verb: math.MaxUint32, CreatedAt: math.MaxInt64, TTL: 1, PayloadLength: math.MaxUint32},
		{ID: 300, CreatedAt: -1, TTL: MaxTTL, Params: AppendParam(nil, "traceparent", []byte("00-x-y-01"))},
		{Flags: FlagCancel, ID: 7, Verb: 9},
	}
	for _, h := range seeds {
		f.Add(AppendHeader(nil, &h), uint32(testMaxPayload))
	}
	f.Add(unhex(f, "00 8000 00 0000000000000000 00"), uint32(0))
	f.Add(unhex(f, "08 00 00 0000000000000000 03 01 61 01"), uint32(0))
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, maxPayload uint32) {
		h, n, err := DecodeHeader(data, maxPayload)
		if err != nil {
			require.Zero(t, n)
			return
		}
		require.LessOrEqual(t, n, len(data))
		require.LessOrEqual(t, n, MaxHeaderSize)
		require.LessOrEqual(t, h.PayloadLength, maxPayload)

		// Anything accepted re-encodes to a header that decodes the same,
		// and the re-encoding is a fixed point.
		enc := AppendHeader(nil, &h)
		h2, n2, err := DecodeHeader(enc, maxPayload)
		require.NoError(t, err)
		require.Equal(t, len(enc), n2)
		require.Equal(t, h, h2)
		require.Equal(t, enc, AppendHeader(nil, &h2))
		// Every accepted header has one encoding: the one it came in.
		require.Equal(t, data[:n], enc)
	})
}

func FuzzParams(f *testing.F) {
	f.Add(AppendParam(AppendParam(nil, "traceparent", []byte("00-x-y-01")), "tracestate", []byte("a=b")), "traceparent")
	f.Add(AppendParam(nil, "", nil), "")
	f.Add([]byte{0x05, 'a'}, "a")
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "x")
	f.Fuzz(func(t *testing.T, block []byte, key string) {
		// Whatever the block holds, reading it does not panic, and a block
		// that reads without error is rebuilt exactly from its pairs.
		var rebuilt []byte
		var first []byte
		found := false
		err := RangeParams(block, func(k, v []byte) bool {
			rebuilt = AppendParam(rebuilt, string(k), v)
			if !found && string(k) == key {
				first, found = v, true
			}
			return true
		})
		v, ok := Param(block, key)
		if err == nil {
			// An empty block rebuilds to nil: compare contents only.
			require.True(t, bytes.Equal(block, rebuilt), "block %x rebuilt as %x", block, rebuilt)
			require.Equal(t, found, ok)
			require.Equal(t, first, v)
		}

		// A pair built from the input reads back as written.
		b := AppendParam(nil, key, block)
		got, ok := Param(b, key)
		require.True(t, ok)
		require.True(t, bytes.Equal(block, got), "value %x read as %x", block, got)
		if len(b) > 0 && len(b) <= MaxParamsSize {
			h := Header{Params: b}
			dec, _, err := DecodeHeader(AppendHeader(nil, &h), 0)
			require.NoError(t, err)
			require.Equal(t, b, dec.Params)
		}
	})
}

// BenchmarkDecodeHeader decodes the header of a small one-way message (a
// reader decodes one for every message of a batch, with Header.Decode).
func BenchmarkDecodeHeader(b *testing.B) {
	enc := AppendHeader(nil, &Header{ID: 1 << 20, Verb: 7, CreatedAt: 1_700_000_000_000_000_000, PayloadLength: 128})
	for b.Loop() {
		h, n, err := DecodeHeader(enc, 1<<20)
		if err != nil || n != len(enc) || h.PayloadLength != 128 {
			b.Fatal(h, n, err)
		}
	}
}

// TestUvarintShortFormsMatchTheGeneralDecoder checks the two- and
// three-byte shortcut against binary.Uvarint with the same rules: every
// first two bytes, a third from each range the shortcut tells apart, and
// the buffer ending after each of them.
func TestUvarintShortFormsMatchTheGeneralDecoder(t *testing.T) {
	general := func(b []byte) (uint64, int, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 || k > 1 && b[k-1] == 0 {
			return 0, 0, false
		}
		return v, k, true
	}
	for x := range 1 << 16 {
		for _, third := range []byte{0x00, 0x01, 0x02, 0x40, 0x7f, 0x80, 0x81, 0xff} {
			b := []byte{byte(x), byte(x >> 8), third, 0x01}
			for n := range len(b) + 1 {
				v, off, err := uvarint(b[:n], 0)
				wv, wk, ok := general(b[:n])
				if ok != (err == nil) || ok && (v != wv || off != wk) {
					t.Fatalf("% x: got %d, %d, %v; want %d, %d, ok %v", b[:n], v, off, err, wv, wk, ok)
				}
			}
		}
	}
}
