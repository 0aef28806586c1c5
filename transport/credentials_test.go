package transport_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestLoadCredentialsRefusesWhatCannotWork(t *testing.T) {
	ca := newCA(t, "test")
	cert, other := issue(t, ca, "n1", time.Hour, time.Hour), issue(t, ca, "n2", time.Hour, time.Hour)
	certPEM, keyPEM, err := transporttest.EncodePEM(cert)
	require.NoError(t, err)
	_, otherKeyPEM, err := transporttest.EncodePEM(other)
	require.NoError(t, err)
	anonPEM, anonKeyPEM := certificateWithoutIdentity(t)
	for _, tt := range []struct {
		name                string
		certPEM, keyPEM, ca []byte
		want                string
	}{
		{"another certificate's key", certPEM, otherKeyPEM, ca.PEM(), "private key does not match"},
		{"no CA", certPEM, keyPEM, nil, "no CA certificate"},
		{"a key where the CA should be", certPEM, keyPEM, keyPEM, "no CA certificate"},
		{"no identity", anonPEM, anonKeyPEM, ca.PEM(), "internode://<cluster>/<node>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transport.MutualTLSFromPEM(tt.certPEM, tt.keyPEM, tt.ca)
			require.ErrorContains(t, err, tt.want)
		})
	}
	files := newTLSFiles(t)
	_, err = transport.MutualTLS(files.cert, files.key, files.ca)
	require.ErrorIs(t, err, os.ErrNotExist)
}

// certificateWithoutIdentity is a self-signed certificate with no URI SAN.
func certificateWithoutIdentity(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	template := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	certPEM, keyPEM, err = transporttest.EncodePEM(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	require.NoError(t, err)
	return certPEM, keyPEM
}

// TestCredentialsReload: a reload that fails — the certificate replaced
// but not yet its key — leaves the material in force; once the files are
// whole, Reload puts them in force.
func TestCredentialsReload(t *testing.T) {
	ca := newCA(t, "test")
	files := newTLSFiles(t)
	first := issue(t, ca, "n1", time.Hour, time.Hour)
	files.write(t, &first, ca)
	creds, err := transport.LoadCredentials(files.cert, files.key, files.ca)
	require.NoError(t, err)
	require.Equal(t, first.Leaf.SerialNumber, creds.Certificate().SerialNumber)

	second := issue(t, ca, "n1", time.Hour, time.Hour)
	certPEM, keyPEM, err := transporttest.EncodePEM(second)
	require.NoError(t, err)
	writeAtomically(t, files.cert, certPEM)
	require.ErrorContains(t, creds.Reload(), "private key does not match")
	require.Equal(t, first.Leaf.SerialNumber, creds.Certificate().SerialNumber, "the old material stays")

	writeAtomically(t, files.key, keyPEM)
	require.NoError(t, creds.Reload())
	require.Equal(t, second.Leaf.SerialNumber, creds.Certificate().SerialNumber)
}

func TestCredentialsUpdate(t *testing.T) {
	ca := newCA(t, "test")
	first, second := issue(t, ca, "n1", time.Hour, time.Hour), issue(t, ca, "n1", time.Hour, time.Hour)
	creds, err := transport.NewCredentials(first, ca.Pool())
	require.NoError(t, err)
	require.NoError(t, creds.Reload(), "nothing to re-read")
	require.ErrorContains(t, creds.Update(second, nil), "no trusted roots")
	require.ErrorContains(t, creds.Update(tls.Certificate{}, ca.Pool()), "private key")
	require.Equal(t, first.Leaf.SerialNumber, creds.Certificate().SerialNumber)
	require.NoError(t, creds.Update(second, ca.Pool()))
	require.Equal(t, second.Leaf.SerialNumber, creds.Certificate().SerialNumber)

	certPEM, keyPEM, err := transporttest.EncodePEM(first)
	require.NoError(t, err)
	cfg, err := transport.MutualTLSFromPEM(certPEM, keyPEM, append(ca.PEM(), newCA(t, "test").PEM()...))
	require.NoError(t, err)
	require.Equal(t, first.Leaf.SerialNumber, cfg.Credentials.Certificate().SerialNumber)
}

// TestCredentialsUpdateRefusesAMismatchedKey: material from a secret store
// whose certificate was rotated but not yet its key (or the reverse) is
// refused by NewCredentials and Update, as Reload refuses such files; the
// material in force stays and the node goes on talking. (It was put in
// force: every new handshake then failed on the key, both ways.)
func TestCredentialsUpdateRefusesAMismatchedKey(t *testing.T) {
	ca := newCA(t, "test")
	first, second := issue(t, ca, "n2", time.Hour, time.Hour), issue(t, ca, "n2", time.Hour, time.Hour)
	halfRotated := tls.Certificate{Certificate: second.Certificate, PrivateKey: first.PrivateKey}
	_, err := transport.NewMutualTLS(halfRotated, ca.Pool())
	require.ErrorContains(t, err, "private key does not match")

	n2 := mutualTLS(t, first, ca.Pool())
	c, _ := tlsNodes(t, tlsFor(t, ca, "n1"), n2)
	require.ErrorContains(t, n2.Credentials.Update(halfRotated, ca.Pool()), "private key does not match")
	require.Equal(t, first.Leaf.SerialNumber, n2.Credentials.Certificate().SerialNumber, "the old material stays")
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
	require.NoError(t, err, "n2 still presents a certificate it can prove")
	_, err = c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, []byte("x"))
	require.NoError(t, err)
}

// TestCredentialsReloadRefusesAFileCutShort: a file read while it is being
// written, cut inside a PEM block, fails the reload; the material in
// force stays. (The cut block was skipped: a roots file being rewritten
// with the new CA first and the old after put the new CA alone in force,
// refusing every old-CA peer; a certificate file cut after its leaf lost
// its intermediates.)
func TestCredentialsReloadRefusesAFileCutShort(t *testing.T) {
	oldCA, newCA := newCA(t, "test"), newCA(t, "test")
	files := newTLSFiles(t)
	cert := issue(t, oldCA, "n1", time.Hour, time.Hour)
	files.write(t, &cert, oldCA)
	creds, err := transport.LoadCredentials(files.cert, files.key, files.ca)
	require.NoError(t, err)

	both := append(newCA.PEM(), oldCA.PEM()...)
	writeAtomically(t, files.ca, both[:len(newCA.PEM())+len(oldCA.PEM())/2])
	require.ErrorContains(t, creds.Reload(), "cut short")

	certPEM, _, err := transporttest.EncodePEM(cert)
	require.NoError(t, err)
	writeAtomically(t, files.ca, oldCA.PEM())
	writeAtomically(t, files.cert, append(certPEM, oldCA.PEM()[:40]...)) // an intermediate on its way
	require.ErrorContains(t, creds.Reload(), "cut short")

	writeAtomically(t, files.cert, append(certPEM, oldCA.PEM()...))
	writeAtomically(t, files.ca, both)
	require.NoError(t, creds.Reload(), "whole files")
}

// TestCredentialsCheckTheCertificateSentNotAStaleLeaf: a tls.Certificate
// whose chain was replaced while its Leaf, the parsed form crypto/tls
// lets a caller fill in, still describes the old one (a struct copied
// and given the new chain, as tls.X509KeyPair fills Leaf in) is checked
// as the chain it sends: the new certificate with the old key is refused,
// and the material in force stays. (The key was checked against the
// stale Leaf: the half-rotated certificate was put in force, and every
// handshake failed on the key, both ways.)
func TestCredentialsCheckTheCertificateSentNotAStaleLeaf(t *testing.T) {
	ca := newCA(t, "test")
	first, second := issue(t, ca, "n2", time.Hour, time.Hour), issue(t, ca, "n2", time.Hour, time.Hour)
	halfRotated := first // its Leaf, and its key, are first's
	halfRotated.Certificate = second.Certificate
	_, err := transport.NewMutualTLS(halfRotated, ca.Pool())
	require.ErrorContains(t, err, "private key does not match")

	n2 := mutualTLS(t, first, ca.Pool())
	c, _ := tlsNodes(t, tlsFor(t, ca, "n1"), n2)
	require.ErrorContains(t, n2.Credentials.Update(halfRotated, ca.Pool()), "private key does not match")
	require.Equal(t, first.Leaf.SerialNumber, n2.Credentials.Certificate().SerialNumber, "the old material stays")
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
	require.NoError(t, err, "n2 still presents a certificate it can prove")
	_, err = c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, []byte("x"))
	require.NoError(t, err)
}
