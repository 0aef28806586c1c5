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

	// A leaving node writes version 2 with the flags byte.
	assert.Equal(t, []byte("\x02\x0e127.0.0.1:7000\x01"), encodeLeavingMeta("127.0.0.1:7000"))

	longest := strings.Repeat("h", MaxTransportAddrLen-5) + ":7000" // a two-byte length
	assert.Len(t, encodeLeavingMeta(longest), ml.MetaMaxSize)
	assert.Len(t, encodeMeta(longest), ml.MetaMaxSize-1)
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
		assert.Equal(t, nodeMeta{addr: addr}, got)

		got, err = decodeMeta(encodeLeavingMeta(addr))
		require.NoError(t, err, addr)
		assert.Equal(t, nodeMeta{addr: addr, leaving: true}, got)
	}
}

func TestDecodeMeta(t *testing.T) {
	tests := []struct {
		name    string
		meta    []byte
		want    nodeMeta
		wantErr bool
	}{
		{"valid", []byte("\x01\x0e127.0.0.1:7000"), nodeMeta{addr: "127.0.0.1:7000"}, false},
		{"version 1, trailing bytes are not flags", []byte("\x01\x0e127.0.0.1:7000\x01"), nodeMeta{addr: "127.0.0.1:7000"}, false},
		{"leaving", []byte("\x02\x0e127.0.0.1:7000\x01"), nodeMeta{addr: "127.0.0.1:7000", leaving: true}, false},
		{"version 2, not leaving", []byte("\x02\x0e127.0.0.1:7000\x00"), nodeMeta{addr: "127.0.0.1:7000"}, false},
		{"reserved flags ignored", []byte("\x02\x0e127.0.0.1:7000\xfe"), nodeMeta{addr: "127.0.0.1:7000"}, false},
		{"later version, trailing fields ignored", []byte("\x03\x0e127.0.0.1:7000\x07extra"), nodeMeta{addr: "127.0.0.1:7000", leaving: true}, false},
		{"version 2 without flags", []byte("\x02\x0e127.0.0.1:7000"), nodeMeta{}, true},
		{"missing", nil, nodeMeta{}, true},
		{"empty", []byte{}, nodeMeta{}, true},
		{"version 0", []byte("\x00\x0e127.0.0.1:7000"), nodeMeta{}, true},
		{"no length", []byte{1}, nodeMeta{}, true},
		{"truncated length", []byte{1, 0x80}, nodeMeta{}, true},
		{"truncated address", []byte("\x01\x0f127.0.0.1:7000"), nodeMeta{}, true},
		{"huge length", []byte("\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01x"), nodeMeta{}, true},
		{"empty address", []byte{1, 0}, nodeMeta{}, true},
		{"no port", []byte("\x01\x09127.0.0.1"), nodeMeta{}, true},
		{"port 0", []byte("\x01\x0b127.0.0.1:0"), nodeMeta{}, true},
		{"plain text from another application", []byte("role=cache"), nodeMeta{}, true},
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
		{"[fe80::1%eth0]:7000", true}, // a zone is fine on a dialable IP
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
	f.Add([]byte("\x02\x0e127.0.0.1:7000"))
	f.Add([]byte{1, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, meta []byte) {
		got, err := decodeMeta(meta)
		if err != nil {
			return
		}
		// Anything accepted re-encodes to a record that decodes the same.
		require.NoError(t, checkTransportAddr(got.addr))
		encode := encodeMeta
		if got.leaving {
			encode = encodeLeavingMeta
		}
		again, err := decodeMeta(encode(got.addr))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

// TestTransportAddrUnspecified: a node given its transport's listen address
// "0.0.0.0:7000" as TransportAddr (all interfaces, like ":7000", which was
// already refused) gossiped it, and every other member dialled 0.0.0.0,
// which reaches the dialler's own transport. Such an address is refused in
// the Config and ignored in a peer's gossip. So is one with an IPv6 zone
// ("[::%lo]:7000"), which net.ParseIP does not read as an IP but which a
// dialler resolves to its own unspecified address just the same.
func TestTransportAddrUnspecified(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:7000", "[::]:7000", "[::%lo]:7000", "[::ffff:0.0.0.0%eth0]:7000"} {
		err := Config{NodeID: "n1", TransportAddr: addr}.Validate()
		assert.ErrorIs(t, err, ErrInvalidConfig, addr)
		assert.ErrorIs(t, err, ErrInvalidAddr, addr)
		_, err = decodeMeta(encodeMeta(addr))
		assert.ErrorIs(t, err, errMalformedMeta, "%s from a peer", addr)
	}
}
