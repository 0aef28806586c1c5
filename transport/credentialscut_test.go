package transport_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestCredentialsReloadRefusesAFileCutInsideABeginLine: a roots file, or
// a certificate file, read while it is being written and cut inside the
// "-----BEGIN" line of its next PEM block fails the reload, as one cut
// anywhere else inside a block does; the material in force stays. (Only
// a cut past the whole "-----BEGIN" was noticed: cut before it, the file
// parsed as the blocks before, and a roots file being rewritten with the
// new CA first and the old after put the new CA alone in force, refusing
// every old-CA peer; a certificate file lost its intermediate.)
func TestCredentialsReloadRefusesAFileCutInsideABeginLine(t *testing.T) {
	oldCA, newCA := newCA(t, "test"), newCA(t, "test")
	files := newTLSFiles(t)
	cert := issue(t, oldCA, "n1", time.Hour, time.Hour)
	files.write(t, &cert, oldCA)
	creds, err := transport.LoadCredentials(files.cert, files.key, files.ca)
	require.NoError(t, err)
	certPEM, _, err := transporttest.EncodePEM(cert)
	require.NoError(t, err)
	inForce := creds.Certificate().SerialNumber

	both := append(newCA.PEM(), oldCA.PEM()...)
	withIntermediate := append(append([]byte(nil), certPEM...), oldCA.PEM()...)
	for cut := 1; cut < len("-----BEGIN"); cut++ {
		t.Run(fmt.Sprintf("roots cut %d bytes into the next block", cut), func(t *testing.T) {
			writeAtomically(t, files.cert, certPEM)
			writeAtomically(t, files.ca, both[:len(newCA.PEM())+cut])
			require.ErrorContains(t, creds.Reload(), "cut short", "roots ending %q", both[len(newCA.PEM()):len(newCA.PEM())+cut])
		})
		t.Run(fmt.Sprintf("certificate cut %d bytes into the next block", cut), func(t *testing.T) {
			writeAtomically(t, files.ca, oldCA.PEM())
			writeAtomically(t, files.cert, withIntermediate[:len(certPEM)+cut])
			require.ErrorContains(t, creds.Reload(), "cut short", "certificate ending %q", withIntermediate[len(certPEM):len(certPEM)+cut])
		})
	}
	require.Equal(t, inForce, creds.Certificate().SerialNumber)
	writeAtomically(t, files.cert, withIntermediate)
	writeAtomically(t, files.ca, both)
	require.NoError(t, creds.Reload(), "whole files")
}
