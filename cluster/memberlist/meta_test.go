package memberlist

import (
	"strings"
	"testing"

	ml "github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetaFormat pins the metadata bytes: they are part of the gossip format
// that nodes of different versions exchange.
func TestMetaFormat(t *testing.T) {
	assert.Equal(t, []byte("\x01\x0e127.0.0.1:7000"), encodeMeta("127.0.0.1:7000"))

	long := strings.Repeat("h", 200) + ":7000" // 205 bytes: a two-byte uvarint length
	assert.Equal(t, append([]byte{0x01, 0xcd, 0x01}, long...), encodeMeta(long))

	longest := strings.Repeat("h", MaxTransportAddrLen-5) + ":7000"
	assert.Len(t, encodeMeta(longest), ml.MetaMaxSize)
}

func TestMetaRoundTrip(t *testing.T) {
	for _, addr := range []string{
		"127.0.0.1:7000",
		"[::1]:65535",
		"db-3.example:1",
		strings.Repeat("h", MaxTransportAddrLen-5) + ":7000",
	} {
		got, err := decodeMeta(encodeMeta(addr))
		require.NoError(t, err, addr)
		assert.Equal(t, addr, got)
	}
}

func TestDecodeMeta(t *testing.T) {
	tests := []struct {
		name    string
		meta    []byte
		want    string
		wantErr bool
	}{
		{"valid", []byte("\x01\x0e127.0.0.1:7000"), "127.0.0.1:7000", false},
		{"later version, trailing fields ignored", []byte("\x02\x0e127.0.0.1:7000\x07extra"), "127.0.0.1:7000", false},
		{"missing", nil, "", true},
		{"empty", []byte{}, "", true},
		{"version 0", []byte("\x00\x0e127.0.0.1:7000"), "", true},
		{"no length", []byte{1}, "", true},
		{"truncated length", []byte{1, 0x80}, "", true},
		{"truncated address", []byte("\x01\x0f127.0.0.1:7000"), "", true},
		{"huge length", []byte("\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01x"), "", true},
		{"empty address", []byte{1, 0}, "", true},
		{"no port", []byte("\x01\x09127.0.0.1"), "", true},
		{"port 0", []byte("\x01\x0b127.0.0.1:0"), "", true},
		{"plain text from another application", []byte("role=cache"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMeta(tt.meta)
			if tt.wantErr {
				assert.ErrorIs(t, err, errMalformedMeta)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestCheckTransportAddr(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:7000", true},
		{"[::1]:7000", true},
		{"db-1:7000", true},
		{"127.0.0.1:65535", true},
		{"", false},
		{"127.0.0.1", false},
		{":7000", false},
		{"127.0.0.1:0", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1:http", false},
		{strings.Repeat("h", MaxTransportAddrLen) + ":1", false},
	}
	for _, tt := range tests {
		err := checkTransportAddr(tt.addr)
		if tt.ok {
			assert.NoError(t, err, tt.addr)
		} else {
			assert.ErrorIs(t, err, ErrInvalidAddr, tt.addr)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte("\x01\x0e127.0.0.1:7000"))
	f.Add([]byte("\x02\x0e127.0.0.1:7000\x07extra"))
	f.Add([]byte{1, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, meta []byte) {
		addr, err := decodeMeta(meta)
		if err != nil {
			return
		}
		// Anything accepted re-encodes to a record that decodes the same.
		require.NoError(t, checkTransportAddr(addr))
		again, err := decodeMeta(encodeMeta(addr))
		require.NoError(t, err)
		require.Equal(t, addr, again)
	})
}
