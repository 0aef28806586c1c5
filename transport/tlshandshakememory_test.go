package transport_test

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// stalledFlight lets the first left bytes written through it reach the
// socket and fails every write after: a peer that sends most of a
// handshake message and then goes quiet, its socket left open.
type stalledFlight struct {
	net.Conn
	left int
}

var errStalledFlight = errors.New("cut")

func (c *stalledFlight) Write(b []byte) (int, error) {
	k := min(len(b), c.left)
	c.left -= k
	n, err := c.Conn.Write(b[:k])
	if err == nil && n < len(b) {
		err = errStalledFlight
	}
	return n, err
}

// TestUnfinishedTLSHandshakesHoldLittle: an unfinished handshake holds
// memory outside the limits, bounded by MaxPendingHandshakes and
// Timeouts.Handshake; under TLS it held whatever crypto/tls buffers of
// the peer's flight: a client Certificate message of up to 256 KiB, from
// a peer with no certificate of this cluster, which sent most of it and
// went quiet. 64 such handshakes from 4 hosts grew the node's heap by
// about 19 MiB (256, the default MaxPendingHandshakes, by about 77 MiB)
// for Timeouts.Handshake, again and again. A TLS handshake now reads at
// most maxTLSHandshake (64 KiB) from the peer, and is refused
// (RefusedTLS) beyond.
func TestUnfinishedTLSHandshakesHoldLittle(t *testing.T) {
	if raceEnabled {
		t.Skip("measures the heap; the race detector inflates it")
	}
	const hosts, perHost, bound = 4, 16, 8 << 20
	ca := newCA(t, "test")
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Security.TLS = tlsFor(t, ca, "n1")
		cfg.Security.MaxPendingHandshakesPerHost = perHost
		cfg.Timeouts.Handshake = time.Minute // the stalled handshakes stay unfinished throughout
	})
	node := c.Nodes[0]
	cert, err := newCA(t, "other").Issue("n9")
	require.NoError(t, err)
	cert.Certificate = append(cert.Certificate, make([]byte, 250<<10)) // a chain no verifier gets to see
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for h := range hosts {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+h))}}
		for range perHost {
			raw, err := d.Dial("tcp", node.Addr().String())
			require.NoError(t, err)
			t.Cleanup(func() { raw.Close() })
			err = tls.Client(&stalledFlight{Conn: raw, left: 240 << 10}, cfg).Handshake()
			require.ErrorIs(t, err, errStalledFlight)
		}
	}
	// Until the node has either read the flights (and holds them) or
	// refused them all.
	var grew uint64
	waitFor(t, 10*time.Second, "the flights read or refused", func() bool {
		runtime.GC()
		var now runtime.MemStats
		runtime.ReadMemStats(&now)
		grew = now.HeapAlloc - min(now.HeapAlloc, before.HeapAlloc)
		return grew >= bound || node.Stats().Refusals[transport.RefusedTLS] == hosts*perHost
	})
	st := node.Stats()
	t.Logf("heap grew by %d KiB for %d unfinished TLS handshakes; %d connections open, %d refused (tls)",
		grew>>10, hosts*perHost, st.InboundConnections, st.Refusals[transport.RefusedTLS])
	assert.Less(t, grew, uint64(bound), "heap grew by %d KiB for %d unfinished TLS handshakes (%d connections open)",
		grew>>10, hosts*perHost, st.InboundConnections)
}
