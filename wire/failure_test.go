package wire

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFailureConstantsArePinned(t *testing.T) {
	// Changing any of these changes the wire format; see doc.go.
	assert.Equal(t, FailureCode(0), FailureUnknown)
	assert.Equal(t, FailureCode(1), FailureUnknownVerb)
	assert.Equal(t, FailureCode(2), FailureHandlerError)
	assert.Equal(t, FailureCode(3), FailureExpired)
	assert.Equal(t, FailureCode(4), FailureOverloaded)
	assert.Equal(t, FailureCode(5), FailureTooLarge)
	assert.Equal(t, FailureCode(6), FailureCanceled)
	assert.Equal(t, 1024, MaxFailureMessage)
}

func TestFailureCodeString(t *testing.T) {
	tests := []struct {
		code FailureCode
		want string
	}{
		{FailureUnknown, "unknown"},
		{FailureUnknownVerb, "unknown verb"},
		{FailureHandlerError, "handler error"},
		{FailureExpired, "expired"},
		{FailureOverloaded, "overloaded"},
		{FailureTooLarge, "too large"},
		{FailureCanceled, "canceled"},
		{FailureCorrupt, "corrupt"},
		{FailureIncomplete, "incomplete"},
		{FailureCode(9), "failure(9)"},
		{FailureCode(255), "failure(255)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.code.String())
	}
}

func TestFailureGoldenBytes(t *testing.T) {
	got := AppendFailure(nil, Failure{Code: FailureOverloaded, Message: "busy"})
	require.Equal(t, unhex(t, "04 04 62757379"), got)
	got = AppendFailure(nil, Failure{Code: FailureTooLarge, Message: strings.Repeat("m", 200)})
	require.Equal(t, unhex(t, "05 c801"), got[:3])
}

func TestFailureRoundTrip(t *testing.T) {
	atLimit := strings.Repeat("x", MaxFailureMessage)
	// 341 three-byte characters and one more: the limit falls inside it.
	wide := strings.Repeat("€", MaxFailureMessage/3+1)
	tests := []struct {
		name string
		in   Failure
		want Failure
	}{
		{"empty", Failure{}, Failure{}},
		{"each code", Failure{Code: FailureHandlerError, Message: "boom"}, Failure{Code: FailureHandlerError, Message: "boom"}},
		{"unknown code kept", Failure{Code: 200, Message: "new"}, Failure{Code: 200, Message: "new"}},
		{"message at the limit", Failure{Code: FailureExpired, Message: atLimit}, Failure{Code: FailureExpired, Message: atLimit}},
		{"message above the limit is cut", Failure{Code: FailureExpired, Message: atLimit + "y"}, Failure{Code: FailureExpired, Message: atLimit}},
		{"cut keeps characters whole", Failure{Message: wide}, Failure{Message: wide[:MaxFailureMessage/3*3]}},
		{"not UTF-8", Failure{Message: "\xff\xfe"}, Failure{Message: "\xff\xfe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendFailure([]byte("prefix"), tt.in)
			require.Equal(t, "prefix", string(b[:6]))
			got, err := DecodeFailure(b[6:])
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.LessOrEqual(t, len(got.Message), MaxFailureMessage)
			if utf8.ValidString(tt.in.Message) {
				assert.True(t, utf8.ValidString(got.Message))
			}
		})
	}
}

func TestDecodeFailureErrors(t *testing.T) {
	good := AppendFailure(nil, Failure{Code: FailureOverloaded, Message: strings.Repeat("z", 300)})
	t.Run("truncated at every length", func(t *testing.T) {
		for n := range len(good) {
			_, err := DecodeFailure(good[:n])
			// A cut length is truncated input; a cut message is a length
			// that does not match what is left.
			require.Error(t, err, "cut to %d bytes", n)
			if n < 3 {
				require.ErrorIs(t, err, ErrTruncated, "cut to %d bytes", n)
			} else {
				require.ErrorIs(t, err, ErrMalformed, "cut to %d bytes", n)
			}
		}
	})
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"code only", "01", ErrTruncated},
		{"trailing byte", "01 00 00", ErrMalformed},
		{"message longer than its length", "01 01 6161", ErrMalformed},
		{"message shorter than its length", "01 03 6161", ErrMalformed},
		{"message above the limit", "01 8108" + strings.Repeat("61", 1025), ErrMalformed},
		{"giant length", "01 ffffffffffffffff7f", ErrMalformed},
		{"length overflows", "01 ffffffffffffffffff02", ErrMalformed},
		{"length not minimal", "01 8000", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeFailure(unhex(t, tt.in))
			require.ErrorIs(t, err, tt.want)
			assert.Equal(t, Failure{}, got)
		})
	}
}

func TestCutUTF8(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 0, ""},
		{"abc", 3, "abc"},
		{"abc", 2, "ab"},
		{"a€", 3, "a"},  // € is 3 bytes: cut before it
		{"a€", 4, "a€"}, // fits
		{"€€", 5, "€"},  // cut inside the second
		{"😀", 3, ""},    // a 4-byte character cut to nothing
		{"😀x", 4, "😀"},  // fits exactly
		{"\x80\x80\x80\x80\x80", 3, "\x80\x80\x80"}, // not UTF-8: cut where asked
	}
	for _, tt := range tests {
		got := cutUTF8(tt.s, tt.n)
		assert.Equal(t, tt.want, got, "cutUTF8(%q, %d)", tt.s, tt.n)
		assert.LessOrEqual(t, len(got), tt.n)
	}
}

func FuzzFailure(f *testing.F) {
	f.Add(AppendFailure(nil, Failure{Code: FailureOverloaded, Message: "busy"}))
	f.Add(AppendFailure(nil, Failure{Code: FailureHandlerError, Message: strings.Repeat("€", 400)}))
	f.Add(AppendFailure(nil, Failure{Code: 255}))
	f.Add(unhex(f, "01 8108"))
	f.Add(unhex(f, "01 ffffffffffffffffff02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever arrives: no panic, and what passes re-encodes exactly.
		got, err := DecodeFailure(data)
		if err == nil {
			require.LessOrEqual(t, len(got.Message), MaxFailureMessage)
			require.Equal(t, data, AppendFailure(nil, got))
		}

		// A failure built from the input reads back, its message cut to
		// the limit.
		if len(data) == 0 {
			return
		}
		in := Failure{Code: FailureCode(data[0]), Message: string(data[1:])}
		back, err := DecodeFailure(AppendFailure(nil, in))
		require.NoError(t, err)
		require.Equal(t, in.Code, back.Code)
		require.Equal(t, cutUTF8(in.Message, MaxFailureMessage), back.Message)
		require.True(t, strings.HasPrefix(in.Message, back.Message))
	})
}
