package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seal frames a handshake body the way the format says, independently of
// the package: magic | body_len | body | crc32c.
func seal(body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0x494E4F44)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)+4))
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crc32c(b))
}

func mustHello(t testing.TB, h Hello) []byte {
	t.Helper()
	b, err := AppendHello(nil, &h)
	require.NoError(t, err)
	return b
}

func TestHandshakeConstantsArePinned(t *testing.T) {
	// Changing any of these changes the wire format; see doc.go.
	assert.Equal(t, uint32(0x494E4F44), Magic)
	assert.Equal(t, "INOD", string(binary.BigEndian.AppendUint32(nil, Magic)))
	assert.Equal(t, uint8(1), Version1)
	assert.Equal(t, uint8(2), Version2)
	assert.Equal(t, uint8(3), Version3)
	assert.Equal(t, Version3, MinVersion)
	assert.Equal(t, Version3, MaxVersion)
	assert.Equal(t, 1024, MaxHandshakeSize)
	assert.Equal(t, 255, MaxNameLength)
	for i, r := range []RefuseReason{Accepted, UnsupportedVersion, WrongCluster, UnknownNode, IdentityMismatch, BadLane, Refused} {
		assert.Equal(t, RefuseReason(i), r)
	}
}

func TestHandshakeGoldenBytes(t *testing.T) {
	tests := []struct {
		name string
		enc  func() []byte
		want string
	}{
		{
			name: "hello",
			enc: func() []byte {
				return mustHello(t, Hello{MinVersion: 1, MaxVersion: 1, Lane: 2, Cluster: "c", Node: "n1"})
			},
			// magic | body_len 16 | min 1 | max 1 | lane 2 | caps | "c" | "n1" | crc32c
			want: "494e4f44 0010 01 01 02 00000000 0163 026e31 07ab5776",
		},
		{
			name: "reply, accepted",
			enc:  func() []byte { return AppendReply(nil, &Reply{Version: 1}) },
			want: "494e4f44 000b 01 00 00000000 00 94a6c76a",
		},
		{
			name: "reply, refused (version written as 0)",
			enc: func() []byte {
				return AppendReply(nil, &Reply{Version: 1, Reason: WrongCluster, Capabilities: 0x80000001, Message: "no"})
			},
			want: "494e4f44 000d 00 02 80000001 026e6f 265641ba",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := unhex(t, tt.want)
			got := tt.enc()
			require.Equal(t, want, got)
			require.Equal(t, seal(want[6:len(want)-4]), got, "independent framing")
		})
	}
}

func TestHelloRoundTrip(t *testing.T) {
	longest := strings.Repeat("n", MaxNameLength)
	tests := []struct {
		name string
		h    Hello
	}{
		{"minimal", Hello{MinVersion: 1, MaxVersion: 1}},
		{"names", Hello{MinVersion: 1, MaxVersion: 1, Lane: 1, Cluster: "orders-prod", Node: "10.0.0.1:7000"}},
		{"longest names", Hello{MinVersion: 1, MaxVersion: 1, Cluster: longest, Node: longest}},
		{"wide version range", Hello{MinVersion: 1, MaxVersion: 255, Lane: 255}},
		{"unknown capabilities kept", Hello{MinVersion: 3, MaxVersion: 7, Capabilities: 0xFFFFFFFF}},
		{"UTF-8 names", Hello{MinVersion: 1, MaxVersion: 2, Cluster: "zürich", Node: "nœud-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendHello([]byte("prefix"), &tt.h)
			require.NoError(t, err)
			require.Equal(t, "prefix", string(b[:6]))
			enc := b[6:]
			require.LessOrEqual(t, len(enc), MaxHandshakeSize)
			got, err := DecodeHello(enc)
			require.NoError(t, err)
			assert.Equal(t, tt.h, got)

			read, err := ReadHandshake(bytes.NewReader(enc), make([]byte, MaxHandshakeSize))
			require.NoError(t, err)
			assert.Equal(t, enc, read)
		})
	}
	t.Run("largest hello", func(t *testing.T) {
		b := mustHello(t, Hello{MinVersion: 1, MaxVersion: 1, Cluster: longest, Node: longest})
		assert.Len(t, b, 529)
	})
}

func TestReplyRoundTrip(t *testing.T) {
	longest := strings.Repeat("m", MaxNameLength)
	tests := []struct {
		name string
		in   Reply
		want Reply
	}{
		{"accepted", Reply{Version: 1}, Reply{Version: 1}},
		{"accepted, later version", Reply{Version: 200, Capabilities: 5}, Reply{Version: 200, Capabilities: 5}},
		{"unsupported version", Reply{Reason: UnsupportedVersion, Message: "speaks [1, 1]"}, Reply{Reason: UnsupportedVersion, Message: "speaks [1, 1]"}},
		{"wrong cluster", Reply{Reason: WrongCluster}, Reply{Reason: WrongCluster}},
		{"unknown node", Reply{Reason: UnknownNode}, Reply{Reason: UnknownNode}},
		{"identity mismatch", Reply{Reason: IdentityMismatch}, Reply{Reason: IdentityMismatch}},
		{"bad lane", Reply{Reason: BadLane}, Reply{Reason: BadLane}},
		{"refused", Reply{Reason: Refused, Message: "shutting down"}, Reply{Reason: Refused, Message: "shutting down"}},
		{"unknown reason kept", Reply{Reason: 77}, Reply{Reason: 77}},
		{"refusal drops the version", Reply{Version: 1, Reason: Refused}, Reply{Reason: Refused}},
		{"longest message", Reply{Reason: Refused, Message: longest}, Reply{Reason: Refused, Message: longest}},
		{"long message cut", Reply{Reason: Refused, Message: longest + "more"}, Reply{Reason: Refused, Message: longest}},
		{"cut keeps characters whole", Reply{Reason: Refused, Message: strings.Repeat("€", 100)}, Reply{Reason: Refused, Message: strings.Repeat("€", 85)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendReply([]byte("prefix"), &tt.in)
			require.Equal(t, "prefix", string(b[:6]))
			enc := b[6:]
			got, err := DecodeReply(enc)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)

			read, err := ReadHandshake(bytes.NewReader(enc), make([]byte, MaxHandshakeSize))
			require.NoError(t, err)
			assert.Equal(t, enc, read)
		})
	}
}

func TestAppendHelloErrors(t *testing.T) {
	tooLong := strings.Repeat("x", MaxNameLength+1)
	tests := []struct {
		name string
		h    Hello
	}{
		{"cluster too long", Hello{MinVersion: 1, MaxVersion: 1, Cluster: tooLong}},
		{"node too long", Hello{MinVersion: 1, MaxVersion: 1, Node: tooLong}},
		{"version 0", Hello{MinVersion: 0, MaxVersion: 1}},
		{"no versions", Hello{}},
		{"inverted range", Hello{MinVersion: 2, MaxVersion: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := AppendHello(dst, &tt.h)
			require.Error(t, err)
			assert.Equal(t, "keep", string(got))
		})
	}
}

func TestAppendReplyPanicsWhenAcceptedWithoutVersion(t *testing.T) {
	assert.Panics(t, func() { AppendReply(nil, &Reply{}) })
}

type handshakeDecoder struct {
	name   string
	decode func([]byte) error
	valid  []byte
}

// handshakeDecoders returns both handshake decoders, each with a valid
// input, for the tests that apply to either.
func handshakeDecoders(t testing.TB) []handshakeDecoder {
	return []handshakeDecoder{
		{
			name:   "hello",
			decode: func(b []byte) error { _, err := DecodeHello(b); return err },
			// min 1 | max 2 | lane 3 | caps 0 | "abc" | "n1"
			valid: seal(unhex(t, "01 02 03 00000000 03616263 026e31")),
		},
		{
			name:   "reply",
			decode: func(b []byte) error { _, err := DecodeReply(b); return err },
			// version 0 | Refused | caps 0 | "nope"
			valid: seal(unhex(t, "00 06 00000000 04 6e6f7065")),
		},
	}
}

func TestDecodeHandshakeFramingErrors(t *testing.T) {
	decoders := handshakeDecoders(t)
	for _, d := range decoders {
		t.Run(d.name, func(t *testing.T) {
			require.NoError(t, d.decode(d.valid))
			t.Run("truncated at every length", func(t *testing.T) {
				for n := range len(d.valid) {
					require.ErrorIs(t, d.decode(d.valid[:n]), ErrTruncated, "cut to %d bytes", n)
				}
			})
			t.Run("bad magic", func(t *testing.T) {
				for i := range 4 {
					b := bytes.Clone(d.valid)
					b[i] ^= 0x20
					require.ErrorIs(t, d.decode(b), ErrBadMagic, "byte %d", i)
				}
			})
			t.Run("bad checksum", func(t *testing.T) {
				for i := 6; i < len(d.valid); i++ {
					b := bytes.Clone(d.valid)
					b[i] ^= 0x01
					require.ErrorIs(t, d.decode(b), ErrChecksum, "byte %d", i)
				}
			})
			t.Run("damaged length", func(t *testing.T) {
				for i := 4; i < 6; i++ {
					for bit := range 8 {
						b := bytes.Clone(d.valid)
						b[i] ^= 1 << bit
						require.Error(t, d.decode(b), "bit %d of byte %d", bit, i)
					}
				}
			})
			t.Run("trailing bytes", func(t *testing.T) {
				require.ErrorIs(t, d.decode(append(bytes.Clone(d.valid), 0)), ErrMalformed)
			})
		})
	}
	t.Run("giant length", func(t *testing.T) {
		for _, bodyLen := range []uint16{MaxHandshakeSize - 6 + 1, 0xFFFF} {
			b := binary.BigEndian.AppendUint32(nil, Magic)
			b = binary.BigEndian.AppendUint16(b, bodyLen)
			b = append(b, make([]byte, bodyLen)...)
			for _, d := range decoders {
				require.ErrorIs(t, d.decode(b), ErrHandshakeTooLarge, "%s, body_len %d", d.name, bodyLen)
			}
		}
	})
	t.Run("length at the limit passes the size check", func(t *testing.T) {
		b := seal(make([]byte, MaxHandshakeSize-6-4))
		require.Len(t, b, MaxHandshakeSize)
		for _, d := range decoders {
			err := d.decode(b)
			require.ErrorIs(t, err, ErrMalformed, d.name) // trailing zeros in the body
			require.NotErrorIs(t, err, ErrHandshakeTooLarge, d.name)
		}
	})
	t.Run("length too short for the checksum", func(t *testing.T) {
		for bodyLen := range 4 {
			b := binary.BigEndian.AppendUint32(nil, Magic)
			b = binary.BigEndian.AppendUint16(b, uint16(bodyLen))
			b = append(b, make([]byte, bodyLen)...)
			for _, d := range decoders {
				require.ErrorIs(t, d.decode(b), ErrMalformed, "%s, body_len %d", d.name, bodyLen)
			}
		}
	})
}

func TestDecodeHelloErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"empty body", "", ErrTruncated},
		{"body too short", "01 01 00 000000", ErrTruncated},
		{"no node", "01 01 00 00000000 00", ErrTruncated},
		{"cluster overruns", "01 01 00 00000000 05 6162", ErrTruncated},
		{"node overruns", "01 01 00 00000000 00 03 6e", ErrTruncated},
		{"trailing byte", "01 01 00 00000000 00 00 00", ErrMalformed},
		{"min version 0", "00 01 00 00000000 00 00", ErrMalformed},
		{"both versions 0", "00 00 00 00000000 00 00", ErrMalformed},
		{"inverted range", "02 01 00 00000000 00 00", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeHello(seal(unhex(t, tt.body)))
			require.ErrorIs(t, err, tt.want)
			assert.Equal(t, Hello{}, got)
		})
	}
}

func TestDecodeReplyErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"empty body", "", ErrTruncated},
		{"body too short", "01 00 000000", ErrTruncated},
		{"no message length", "01 00 00000000", ErrTruncated},
		{"message overruns", "01 00 00000000 02 61", ErrTruncated},
		{"trailing byte", "01 00 00000000 00 00", ErrMalformed},
		{"accepted without a version", "00 00 00000000 00", ErrMalformed},
		{"refused with a version", "01 01 00000000 00", ErrMalformed},
		{"unknown reason with a version", "01 80 00000000 00", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeReply(seal(unhex(t, tt.body)))
			require.ErrorIs(t, err, tt.want)
			assert.Equal(t, Reply{}, got)
		})
	}
}

// countingReader counts the bytes taken from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadHandshakeReadsExactlyOneMessage(t *testing.T) {
	hello := mustHello(t, Hello{MinVersion: 1, MaxVersion: 1, Lane: 1, Cluster: "orders-prod", Node: "n1"})
	reply := AppendReply(nil, &Reply{Version: 1})
	after := []byte("the first frame follows the handshake")
	readers := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole", func(r io.Reader) io.Reader { return r }},
		{"one byte at a time", iotest.OneByteReader},
		{"half at a time", iotest.HalfReader},
	}
	messages := []struct {
		name string
		enc  []byte
	}{{"hello", hello}, {"reply", reply}}
	for _, m := range messages {
		for _, rd := range readers {
			t.Run(m.name+"/"+rd.name, func(t *testing.T) {
				msg := m.enc
				src := bytes.NewReader(append(bytes.Clone(msg), after...))
				buf := make([]byte, MaxHandshakeSize)
				got, err := ReadHandshake(rd.wrap(src), buf)
				require.NoError(t, err)
				assert.Equal(t, msg, got)
				assert.Same(t, &buf[0], &got[0], "the message is read into buf")
				rest, err := io.ReadAll(src)
				require.NoError(t, err)
				assert.Equal(t, after, rest, "bytes after the message stay in the reader")
			})
		}
	}
}

func TestReadHandshakeTakesEOFWithTheLastByte(t *testing.T) {
	reply := AppendReply(nil, &Reply{Version: 1})
	got, err := ReadHandshake(iotest.DataErrReader(bytes.NewReader(reply)), make([]byte, MaxHandshakeSize))
	require.NoError(t, err)
	assert.Equal(t, reply, got)
}

func TestReadHandshakeRefusesGiantLengthUnread(t *testing.T) {
	for _, bodyLen := range []uint16{MaxHandshakeSize - 6 + 1, 0xFFFF} {
		b := binary.BigEndian.AppendUint32(nil, Magic)
		b = binary.BigEndian.AppendUint16(b, bodyLen)
		b = append(b, bytes.Repeat([]byte{0xAB}, int(bodyLen))...)
		src := &countingReader{r: bytes.NewReader(b)}
		got, err := ReadHandshake(src, make([]byte, MaxHandshakeSize))
		require.ErrorIs(t, err, ErrHandshakeTooLarge)
		assert.Nil(t, got)
		assert.Equal(t, 6, src.n, "only magic and length are read")
	}
}

func TestReadHandshakeErrors(t *testing.T) {
	valid := mustHello(t, Hello{MinVersion: 1, MaxVersion: 1, Cluster: "c", Node: "n"})
	buf := make([]byte, MaxHandshakeSize)

	t.Run("truncated at every length", func(t *testing.T) {
		_, err := ReadHandshake(bytes.NewReader(nil), buf)
		require.ErrorIs(t, err, io.EOF, "nothing sent")
		for n := 1; n < len(valid); n++ {
			_, err := ReadHandshake(bytes.NewReader(valid[:n]), buf)
			require.ErrorIs(t, err, ErrTruncated, "cut to %d bytes", n)
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut to %d bytes", n)
		}
	})
	t.Run("bad magic", func(t *testing.T) {
		b := bytes.Clone(valid)
		b[0] = 'X'
		src := &countingReader{r: bytes.NewReader(b)}
		_, err := ReadHandshake(src, buf)
		require.ErrorIs(t, err, ErrBadMagic)
		assert.Equal(t, 6, src.n)
	})
	t.Run("bad checksum", func(t *testing.T) {
		b := bytes.Clone(valid)
		b[len(b)-1] ^= 1
		_, err := ReadHandshake(bytes.NewReader(b), buf)
		require.ErrorIs(t, err, ErrChecksum)
	})
	t.Run("length too short for the checksum", func(t *testing.T) {
		_, err := ReadHandshake(bytes.NewReader(unhex(t, "494e4f44 0003 000000")), buf)
		require.ErrorIs(t, err, ErrMalformed)
	})
	t.Run("buffer too small", func(t *testing.T) {
		_, err := ReadHandshake(bytes.NewReader(valid), make([]byte, MaxHandshakeSize-1))
		require.Error(t, err)
	})
	t.Run("reader error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := ReadHandshake(iotest.ErrReader(boom), buf)
		require.ErrorIs(t, err, boom)
		_, err = ReadHandshake(io.MultiReader(bytes.NewReader(valid[:8]), iotest.ErrReader(boom)), buf)
		require.ErrorIs(t, err, boom)
	})
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name     string
		min, max uint8
		want     uint8
		ok       bool
	}{
		{"exactly ours", 3, 3, 3, true},
		{"only the retired version 1", 1, 1, 0, false},
		{"only the retired version 2", 2, 2, 0, false},
		{"wider than ours", 1, 9, MaxVersion, true},
		{"only newer", MaxVersion + 1, MaxVersion + 3, 0, false},
		{"nothing", 0, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := Negotiate(&Hello{MinVersion: tt.min, MaxVersion: tt.max})
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.want, v)
		})
	}
}

func TestRefuseReasonString(t *testing.T) {
	tests := []struct {
		r    RefuseReason
		want string
	}{
		{Accepted, "accepted"},
		{UnsupportedVersion, "unsupported version"},
		{WrongCluster, "wrong cluster"},
		{UnknownNode, "unknown node"},
		{IdentityMismatch, "identity mismatch"},
		{BadLane, "bad lane"},
		{Refused, "refused"},
		{Busy, "busy"},
		{RefuseReason(8), "reason(8)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.r.String())
	}
}

func FuzzHandshake(f *testing.F) {
	f.Add(mustHello(f, Hello{MinVersion: 1, MaxVersion: 1, Lane: 2, Cluster: "c", Node: "n1"}))
	f.Add(mustHello(f, Hello{MinVersion: 1, MaxVersion: 255, Capabilities: 0xFFFFFFFF, Cluster: strings.Repeat("c", 255), Node: strings.Repeat("n", 255)}))
	f.Add(AppendReply(nil, &Reply{Version: 1, Capabilities: 3}))
	f.Add(AppendReply(nil, &Reply{Reason: Refused, Message: "no"}))
	f.Add(append(AppendReply(nil, &Reply{Version: 1}), "frames"...))
	f.Add(unhex(f, "494e4f44 ffff"))
	f.Add(unhex(f, "494e4f44 0000"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever arrives: no panic, and what passes re-encodes exactly.
		if h, err := DecodeHello(data); err == nil {
			require.Equal(t, data, mustHello(t, h))
		}
		if r, err := DecodeReply(data); err == nil {
			require.Equal(t, data, AppendReply(nil, &r))
		}
		src := &countingReader{r: bytes.NewReader(data)}
		msg, err := ReadHandshake(src, make([]byte, MaxHandshakeSize))
		if err == nil {
			require.LessOrEqual(t, len(msg), MaxHandshakeSize)
			require.Equal(t, data[:len(msg)], msg)
			require.Equal(t, len(msg), src.n, "read past the message")
			_, err := openHandshake(msg)
			require.NoError(t, err)
		} else {
			require.LessOrEqual(t, src.n, MaxHandshakeSize)
		}
	})
}
