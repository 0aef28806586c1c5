package main

import (
	"bytes"
	"crypto/x509"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunWithTLS(t *testing.T) {
	o, err := parseOptions([]string{"-tls", "-nodes", "3", "-duration", "1500ms", "-rate", "50"}, io.Discard)
	require.NoError(t, err)
	var stdout bytes.Buffer
	r, err := run(t.Context(), o, &stdout, io.Discard)
	require.NoError(t, err)
	require.True(t, r.TLS)
	require.Zero(t, r.Summary.Lost)
	require.Positive(t, r.Summary.Delivered)
	require.Contains(t, stdout.String(), "mutual TLS")
}

// Node processes started together with one -tls-dir agree on one CA.
func TestLoadOrCreateCAOnce(t *testing.T) {
	dir := t.TempDir()
	cas := make([]*clusterCA, 4)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			ca, err := loadOrCreateCA(dir)
			require.NoError(t, err)
			cas[i] = ca
		})
	}
	wg.Wait()
	for _, ca := range cas[1:] {
		require.True(t, ca.cert.Equal(cas[0].cert))
		require.True(t, ca.key.Equal(cas[0].key))
	}
	// A certificate from one verifies with another's pool.
	cfg, err := cas[0].tlsConfig(clusterName, "n1")
	require.NoError(t, err)
	leaf := cfg.Credentials.Certificate()
	_, err = leaf.Verify(x509.VerifyOptions{Roots: cas[3].pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	require.Equal(t, "internode://simulator/n1", leaf.URIs[0].String())
}
