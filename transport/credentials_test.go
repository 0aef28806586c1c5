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
