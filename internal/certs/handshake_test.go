package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/certs"
)

// outcome is what one end of a handshake saw.
type outcome struct {
	state tls.ConnectionState
	err   error // from the handshake, or from the first read after it
}

// handshake runs a TLS handshake over 127.0.0.1 between a server and a
// client with the given configurations. After a successful handshake the
// server writes one byte and the client reads it, because in TLS 1.3 a
// client learns that the server refused its certificate only when it reads.
func handshake(t *testing.T, serverConfig, clientConfig *tls.Config) (server, client outcome) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)

	serverDone := make(chan outcome, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverDone <- outcome{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		tc := tls.Server(conn, serverConfig)
		if err := tc.Handshake(); err != nil {
			serverDone <- outcome{err: err}
			return
		}
		_, err = tc.Write([]byte{1})
		serverDone <- outcome{state: tc.ConnectionState(), err: err}
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(deadline))
	tc := tls.Client(conn, clientConfig)
	if client.err = tc.Handshake(); client.err == nil {
		client.state = tc.ConnectionState()
		_, client.err = io.ReadFull(tc, make([]byte, 1))
	}
	conn.Close() // a server that refused the client is not waiting for it
	return <-serverDone, client
}

func newCA(t *testing.T, cluster string) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(cluster)
	require.NoError(t, err)
	return ca
}

func issue(t *testing.T, ca *certs.CA, node string) tls.Certificate {
	t.Helper()
	cert, err := ca.Issue(node)
	require.NoError(t, err)
	return cert
}

func identity(t *testing.T, state tls.ConnectionState) (cluster, node string) {
	t.Helper()
	require.NotEmpty(t, state.PeerCertificates)
	cluster, node, ok := certs.NodeIdentity(state.PeerCertificates[0])
	require.True(t, ok)
	return cluster, node
}

// requireRemoteAlert checks that err reports the TLS alert want from the
// peer. crypto/tls reports it as a *net.OpError "remote error" wrapping an
// unexported uint8 type, so the code is read by reflection rather than by
// matching the message.
func requireRemoteAlert(t *testing.T, err error, want uint8) {
	t.Helper()
	var opErr *net.OpError
	require.ErrorAs(t, err, &opErr)
	require.Equal(t, "remote error", opErr.Op, "%v", err)
	alert := reflect.ValueOf(opErr.Err)
	require.Equal(t, reflect.Uint8, alert.Kind(), "crypto/tls changed how it reports alerts: %T", opErr.Err)
	require.EqualValues(t, want, alert.Uint(), "%v", err)
}

// TLS alert codes, RFC 8446 section 6.
const (
	alertBadCertificate      = 42
	alertUnknownCA           = 48
	alertCertificateRequired = 116
)

func TestMutualTLS(t *testing.T) {
	ca := newCA(t, "orders-prod")
	server, client := handshake(t,
		ca.ServerConfig(issue(t, ca, "n1")),
		ca.ClientConfig(issue(t, ca, "n2")))
	require.NoError(t, server.err)
	require.NoError(t, client.err)
	require.Equal(t, uint16(tls.VersionTLS13), client.state.Version)

	cluster, node := identity(t, server.state)
	require.Equal(t, "orders-prod", cluster)
	require.Equal(t, "n2", node, "the server sees the client's node")
	cluster, node = identity(t, client.state)
	require.Equal(t, "orders-prod", cluster)
	require.Equal(t, "n1", node, "the client sees the server's node")
}

func TestServerNameIsIrrelevant(t *testing.T) {
	ca := newCA(t, "c")
	server, err := ca.Issue("n1", "db-1.example")
	require.NoError(t, err)
	clientConfig := ca.ClientConfig(issue(t, ca, "n2"))
	clientConfig.ServerName = "not-a-san.example"
	s, c := handshake(t, ca.ServerConfig(server), clientConfig)
	require.NoError(t, s.err)
	require.NoError(t, c.err)
}

func TestClientFromAnotherCARefused(t *testing.T) {
	ca, impostor := newCA(t, "c"), newCA(t, "c") // same cluster name, other key
	server, client := handshake(t,
		ca.ServerConfig(issue(t, ca, "n1")),
		ca.ClientConfig(issue(t, impostor, "n2")))
	var verifyErr *tls.CertificateVerificationError
	require.ErrorAs(t, server.err, &verifyErr)
	require.ErrorAs(t, server.err, &x509.UnknownAuthorityError{})
	requireRemoteAlert(t, client.err, alertUnknownCA)
}

func TestServerFromAnotherCARefused(t *testing.T) {
	ca, impostor := newCA(t, "c"), newCA(t, "c")
	server, client := handshake(t,
		impostor.ServerConfig(issue(t, impostor, "n1")),
		ca.ClientConfig(issue(t, ca, "n2")))
	require.ErrorAs(t, client.err, &x509.UnknownAuthorityError{})
	requireRemoteAlert(t, server.err, alertBadCertificate)
}

func TestClientWithoutCertificateRefused(t *testing.T) {
	ca := newCA(t, "c")
	clientConfig := ca.ClientConfig(tls.Certificate{})
	clientConfig.Certificates = nil
	server, client := handshake(t, ca.ServerConfig(issue(t, ca, "n1")), clientConfig)
	require.Error(t, server.err)
	requireRemoteAlert(t, client.err, alertCertificateRequired)
}

func TestConfigsRequireTLS13(t *testing.T) {
	ca := newCA(t, "c")
	clientConfig := ca.ClientConfig(issue(t, ca, "n2"))
	clientConfig.MinVersion, clientConfig.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	server, client := handshake(t, ca.ServerConfig(issue(t, ca, "n1")), clientConfig)
	require.Error(t, server.err)
	require.Error(t, client.err)
	require.False(t, errors.Is(server.err, certs.ErrWrongCluster))
}
