package transport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestArrivalsDateBytesByTheFirstMarkThatSawThem: a byte is dated by the
// first mark whose queue reached past it — never earlier than it could
// have arrived — and bytes past the last mark, or before marks were
// taken and already read, are not dated at all once passed.
func TestArrivalsDateBytesByTheFirstMarkThatSawThem(t *testing.T) {
	var a arrivals
	a.read = 100
	a.mark(50, 1000)  // bytes 100..149 had arrived by 1000
	a.mark(50, 1005)  // nothing new: no mark
	a.mark(80, 1010)  // 150..179 by 1010
	a.mark(200, 1015) // 180..299 by 1015
	require.Len(t, a.marks, 3)

	for _, tc := range []struct {
		x    int64
		at   int64
		ok   bool
		left int
	}{
		{x: 90, at: 1000, ok: true, left: 3},  // read before the pause, framed after it
		{x: 149, at: 1000, ok: true, left: 3}, // the first mark's last byte
		{x: 150, at: 1010, ok: true, left: 2}, // passes the first mark
		{x: 299, at: 1015, ok: true, left: 1},
		{x: 300, ok: false, left: 0}, // arrived after the last mark
	} {
		at, ok := a.arrivedBy(tc.x)
		assert.Equal(t, tc.ok, ok, "x=%d", tc.x)
		if tc.ok {
			assert.Equal(t, tc.at, at, "x=%d", tc.x)
		}
		assert.Len(t, a.marks, tc.left, "x=%d", tc.x)
	}
}

// TestArrivalsKeepAFewMarksDatingLater: past maxArrivalMarks the last
// mark moves on, so the bytes it covers are dated later, never earlier.
func TestArrivalsKeepAFewMarksDatingLater(t *testing.T) {
	var a arrivals
	for i := range maxArrivalMarks + 10 {
		a.mark(i+1, int64(1000+i))
	}
	require.Len(t, a.marks, maxArrivalMarks)
	last := a.marks[maxArrivalMarks-1]
	assert.Equal(t, arrivalMark{end: maxArrivalMarks + 10, at: 1000 + maxArrivalMarks + 9}, last)
	at, ok := a.arrivedBy(maxArrivalMarks - 1) // covered by the moved mark
	require.True(t, ok)
	assert.Equal(t, last.at, at)
}

// TestTLSRecordsFollowARealStream: tlsRecords, fed a real TLS 1.3
// stream in pieces of every size, ends each record where it ends, and a
// read limited by it never takes bytes of the next record.
func TestTLSRecordsFollowARealStream(t *testing.T) {
	stream := recordTLS(t)
	// The records, parsed independently.
	var ends []int
	for off := 0; off < len(stream); {
		require.GreaterOrEqual(t, len(stream)-off, 5)
		off += 5 + (int(stream[off+3])<<8 | int(stream[off+4]))
		ends = append(ends, off)
	}
	require.Equal(t, len(stream), ends[len(ends)-1])
	for _, piece := range []int{1, 2, 3, 5, 7, 100, 4096, len(stream)} {
		var r tlsRecords
		off := 0
		var stops []int
		for off < len(stream) {
			n := r.limit(min(piece, len(stream)-off))
			require.Positive(t, n)
			r.advance(stream[off : off+n])
			off += n
			if r.left == 0 && r.have == 0 {
				stops = append(stops, off)
			}
		}
		assert.Equal(t, ends, stops, "piece %d: the stream's record ends", piece)
	}
}

// recordTLS returns the bytes a TLS 1.3 client sends: its handshake and
// application data written in several sizes.
func recordTLS(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	template := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	client, server := net.Pipe()
	var sent bytes.Buffer
	done := make(chan error, 1)
	go func() {
		s := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
		_, err := io.Copy(io.Discard, s)
		done <- err
	}()
	c := tls.Client(teeConn{Conn: client, w: &sent}, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	for _, n := range []int{1, 300, 16 << 10, 40 << 10, 7} {
		_, err := c.Write(make([]byte, n))
		require.NoError(t, err)
	}
	require.NoError(t, c.Close())
	<-done
	return sent.Bytes()
}

type teeConn struct {
	net.Conn
	w *bytes.Buffer
}

func (c teeConn) Write(b []byte) (int, error) {
	c.w.Write(b)
	return c.Conn.Write(b)
}
