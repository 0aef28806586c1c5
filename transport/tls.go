package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"reflect"
	"time"

	"github.com/internode/internode/cluster"
)

// TLSConfig makes every connection of the transport mutual TLS 1.3:
// message lanes, streams and file transfers (which then copy through user
// space: the kernel cannot sendfile into an encrypted stream). A node with
// TLS refuses plain-text peers.
//
// Whatever the configuration says, the transport verifies the peer itself,
// on both ends of every connection, in this order:
//
//  1. the peer's certificate chain, against the configured roots only,
//     with the client-auth (inbound) or server-auth (outbound) key usage,
//     at the current time: an unknown CA, an expired certificate or a
//     wrong usage is refused;
//  2. the identity rule: the certificate's URI SAN (see IdentityURI) must
//     name this cluster and the node the peer claims to be (inbound) or
//     was dialled as (outbound);
//  3. VerifyPeer, if set.
//
// Every handshake is a full one: session resumption is off, whatever
// Server and Client say, since a resumed session proves only that the
// peer holds its ticket's key, not the certificate's.
//
// So InsecureSkipVerify, ServerName, ClientAuth, session tickets and the
// system's roots in Server and Client change nothing: no setting leaves
// only some of these checks. MutualTLS, MutualTLSFromPEM and NewMutualTLS
// make a TLSConfig for the common case. New reads a TLSConfig once; the
// TLSConfig may be shared by several transports, and rotation goes
// through its Credentials.
type TLSConfig struct {
	// Credentials supply the node's certificate and the roots that verify
	// its peers; every new handshake uses the material in force, so
	// Credentials.Reload or Update rotate it without a restart. Required
	// unless Server and Client carry the certificate and roots (below).
	Credentials *Credentials
	// Server and Client, optional, are templates for accepted and dialled
	// connections: cipher suites, curves, KeyLogWriter and the like. The
	// transport overrides their verification settings as described
	// above, and their versions: TLS 1.3 only. With Credentials, their
	// certificates and roots are ignored too. Without, the node's
	// certificate comes from their Certificates, GetCertificate or
	// GetClientCertificate, and the roots from Client.RootCAs (to verify
	// the nodes this one dials) and Server.ClientCAs (to verify the nodes
	// that dial it); each side takes the other's when its own is unset,
	// and Validate refuses a configuration with no roots at all. Server's
	// GetConfigForClient is refused: it would replace these checks.
	Server *tls.Config
	Client *tls.Config
	// VerifyPeer, if set, is a further check after the chain and the
	// identity rule have passed: it can refuse a peer, never admit one
	// they refused. node is the node the peer claims to be or was dialled
	// as, already checked against its certificate.
	VerifyPeer func(cs tls.ConnectionState, clusterName string, node cluster.NodeID) error
	// ReloadInterval is how often the transport re-reads Credentials that
	// came from files (LoadCredentials, MutualTLS), putting them in force
	// if they changed, and checks how long its certificate has left.
	// Default 1 minute, at least 1 ms (Validate refuses less: every poll
	// reads the three files); negative turns the polling and the periodic
	// check off (Reload still works; the expiry metric still reports).
	ReloadInterval time.Duration
	// ExpiryWarning: when the node's own certificate expires within this,
	// the transport logs a warning (at most once an hour). Default 7 days;
	// negative turns the warning off. The metric
	// internode.tls.certificate.expiry reports the seconds left either way.
	ExpiryWarning time.Duration
}

// Defaults of TLSConfig.
const (
	DefaultTLSReloadInterval = time.Minute
	DefaultTLSExpiryWarning  = 7 * 24 * time.Hour
)

// MutualTLS returns a TLSConfig whose certificate, private key and trusted
// roots (one or more CA certificates) are read from PEM files, re-read when
// they change (see TLSConfig.ReloadInterval) or on Credentials.Reload.
func MutualTLS(certFile, keyFile, caFile string) (*TLSConfig, error) {
	creds, err := LoadCredentials(certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	return &TLSConfig{Credentials: creds}, nil
}

// MutualTLSFromPEM returns a TLSConfig from PEM bytes: the certificate, its
// private key and the trusted roots. Rotate with Credentials.Update.
func MutualTLSFromPEM(certPEM, keyPEM, caPEM []byte) (*TLSConfig, error) {
	creds, err := ParseCredentials(certPEM, keyPEM, caPEM)
	if err != nil {
		return nil, err
	}
	return &TLSConfig{Credentials: creds}, nil
}

// NewMutualTLS returns a TLSConfig presenting cert and trusting roots only.
// Rotate with Credentials.Update.
func NewMutualTLS(cert tls.Certificate, roots *x509.CertPool) (*TLSConfig, error) {
	creds, err := NewCredentials(cert, roots)
	if err != nil {
		return nil, err
	}
	return &TLSConfig{Credentials: creds}, nil
}

// minTLSReloadInterval is the shortest positive TLSConfig.ReloadInterval.
const minTLSReloadInterval = time.Millisecond

func (c *TLSConfig) validate(k *checker, clusterName string) {
	k.check(c.ReloadInterval <= 0 || c.ReloadInterval >= minTLSReloadInterval,
		"Security.TLS.ReloadInterval %v is below %v", c.ReloadInterval, minTLSReloadInterval)
	if err := validateIdentityCluster(clusterName); err != nil {
		k.check(false, "with Security.TLS, the ClusterName is a certificate's URI host: %v", err)
	}
	k.check(c.Server == nil || c.Server.GetConfigForClient == nil,
		"Security.TLS.Server.GetConfigForClient is not supported: it would replace the transport's verification; rotate through Credentials")
	if c.Credentials != nil {
		k.check(c.Credentials.current() != nil, "Security.TLS.Credentials must be made by LoadCredentials, ParseCredentials or NewCredentials")
		return
	}
	server, client := c.Server, c.Client
	if server == nil {
		server = &tls.Config{}
	}
	if client == nil {
		client = &tls.Config{}
	}
	k.check(!emptyPool(client.RootCAs) || !emptyPool(server.ClientCAs),
		"Security.TLS has no trusted roots: set Credentials (see MutualTLS), or Client.RootCAs or Server.ClientCAs; "+
			"the transport never trusts the system's roots and never skips verification")
	k.check((len(server.Certificates) > 0 || server.GetCertificate != nil || len(client.Certificates) > 0) &&
		(len(client.Certificates) > 0 || client.GetClientCertificate != nil || len(server.Certificates) > 0),
		"Security.TLS has no certificate for each side: set Credentials (see MutualTLS), or Certificates "+
			"(shared by both sides), or Server.GetCertificate and Client.GetClientCertificate")
}

// tlsState is what a transport's TLS handshakes use, built once by New.
type tlsState struct {
	cfg         TLSConfig
	clusterName string
	server      *tls.Config              // for tls.Server; reads the material in force
	client      *tls.Config              // cloned by clientFor for each dial
	clientRoots func() *x509.CertPool    // verify the nodes that dial this one
	serverRoots func() *x509.CertPool    // verify the nodes this one dials
	leaf        func() *x509.Certificate // the node's own certificate, or nil if unknown
	warned      time.Time                // the last expiry warning; owned by checkTLS
	warnedLeaf  *x509.Certificate        // the certificate it was about
}

func newTLSState(cfg *TLSConfig, clusterName string) *tlsState {
	st := &tlsState{cfg: *cfg, clusterName: clusterName}
	setDefault(&st.cfg.ReloadInterval, DefaultTLSReloadInterval)
	setDefault(&st.cfg.ExpiryWarning, DefaultTLSExpiryWarning)
	server, client := cfg.Server.Clone(), cfg.Client.Clone()
	if server == nil {
		server = &tls.Config{}
	}
	if client == nil {
		client = &tls.Config{}
	}
	if creds := cfg.Credentials; creds != nil {
		server.Certificates, server.GetCertificate = nil, func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return creds.current().cert, nil
		}
		client.Certificates, client.GetClientCertificate = nil, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return creds.current().cert, nil
		}
		roots := func() *x509.CertPool { return creds.current().roots }
		st.clientRoots, st.serverRoots = roots, roots
		st.leaf = creds.Certificate
	} else {
		st.useTemplates(server, client)
	}
	for _, c := range []*tls.Config{server, client} {
		c.MinVersion = tls.VersionTLS13
		if c.MaxVersion != 0 && c.MaxVersion < tls.VersionTLS13 {
			c.MaxVersion = 0
		}
	}
	// The server asks for any certificate and verifies it itself, below:
	// no ClientAuth setting can weaken that.
	server.ClientAuth = tls.RequireAnyClientCert
	server.GetConfigForClient = nil
	server.VerifyConnection = chainVerifier(server.VerifyConnection, func(cs tls.ConnectionState) error {
		return verifyChain(cs.PeerCertificates, st.clientRoots(), x509.ExtKeyUsageClientAuth)
	})
	// The client takes over verification (clientFor): crypto/tls would
	// check a host name, which says nothing about which node answered.
	client.InsecureSkipVerify = true
	// No session resumption, either way: a resumed session proves only
	// that the peer holds the key its ticket was sealed with — a key
	// that templates may share between nodes — and crypto/tls then gives
	// the verification the certificate of the first handshake, which
	// names whichever node was there. Every handshake proves its
	// certificate.
	server.SessionTicketsDisabled, server.WrapSession, server.UnwrapSession = true, nil, nil
	client.SessionTicketsDisabled, client.ClientSessionCache = true, nil
	st.server, st.client = server, client
	return st
}

// useTemplates takes the certificate and roots from the user's templates,
// which keep their own certificate settings; a side without a certificate
// takes the other's Certificates. Validate made sure both sides have one
// and there is a root.
func (st *tlsState) useTemplates(server, client *tls.Config) {
	if len(server.Certificates) == 0 && server.GetCertificate == nil {
		server.Certificates = client.Certificates
	}
	if len(client.Certificates) == 0 && client.GetClientCertificate == nil {
		client.Certificates = server.Certificates
	}
	serverRoots, clientRoots := client.RootCAs, server.ClientCAs
	if emptyPool(serverRoots) {
		serverRoots = clientRoots
	}
	if emptyPool(clientRoots) {
		clientRoots = serverRoots
	}
	st.serverRoots = func() *x509.CertPool { return serverRoots }
	st.clientRoots = func() *x509.CertPool { return clientRoots }
	var leaf *x509.Certificate
	for _, certs := range [][]tls.Certificate{server.Certificates, client.Certificates} {
		if len(certs) > 0 && leaf == nil {
			if leaf = certs[0].Leaf; leaf == nil && len(certs[0].Certificate) > 0 {
				leaf, _ = x509.ParseCertificate(certs[0].Certificate[0])
			}
		}
	}
	st.leaf = func() *x509.Certificate { return leaf }
}

// clientFor returns the configuration for dialling node: the chain, then
// the certificate naming node, then VerifyPeer. A refusal aborts the
// handshake, so the peer is told with a bad-certificate alert.
func (st *tlsState) clientFor(node cluster.NodeID) *tls.Config {
	c := st.client.Clone()
	c.VerifyConnection = chainVerifier(c.VerifyConnection, func(cs tls.ConnectionState) error {
		if err := verifyChain(cs.PeerCertificates, st.serverRoots(), x509.ExtKeyUsageServerAuth); err != nil {
			return err
		}
		if err := st.verifyPeer(cs, node); err != nil {
			return fmt.Errorf("peer %q: %w", node, err)
		}
		return nil
	})
	return c
}

// verifyPeer applies the identity rule and then VerifyPeer to a connection
// whose chain was verified.
func (st *tlsState) verifyPeer(cs tls.ConnectionState, node cluster.NodeID) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no peer certificate")
	}
	if err := checkIdentity(cs.PeerCertificates[0], st.clusterName, node); err != nil {
		return err
	}
	if v := st.cfg.VerifyPeer; v != nil {
		return v(cs, st.clusterName, node)
	}
	return nil
}

// chainVerifier runs ours, then the template's own VerifyConnection, which
// can only refuse more.
func chainVerifier(theirs, ours func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	if theirs == nil {
		return ours
	}
	return func(cs tls.ConnectionState) error {
		if err := ours(cs); err != nil {
			return err
		}
		return theirs(cs)
	}
}

// verifyChain verifies a peer's certificate chain against roots, for
// usage, now.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return errors.New("the peer presented no certificate")
	}
	if emptyPool(roots) {
		return errors.New("no trusted roots") // Validate prevents it
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: time.Now()}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := chain[0].Verify(opts); err != nil {
		return fmt.Errorf("peer certificate: %w", err)
	}
	return nil
}

// isRemoteAlert reports whether err is a TLS alert from the peer, which
// after the handshake is how TLS 1.3 tells a client its certificate was
// refused.
func isRemoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// localAlert reports whether err is a TLS alert this end sent, refusing
// what the peer sent — a record that fails its authentication (damaged on
// the way, or forged), or one that breaks the protocol — and returns the
// alert's code (RFC 8446, section 6). crypto/tls reports such an alert as
// a *net.OpError ("local error"), as it does a connection that broke: to
// the reader it is bad input, not a broken connection.
func localAlert(err error) (code uint8, ok bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "local error" {
		return 0, false
	}
	// The alert's type is crypto/tls's own: a uint8, the alert's code.
	if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 {
		return uint8(v.Uint()), true
	}
	return 0, true
}

// isLocalAlert reports whether err is a TLS alert this end sent (localAlert).
func isLocalAlert(err error) bool {
	_, ok := localAlert(err)
	return ok
}

// alertBadRecordMAC is the TLS alert sent for a record that fails its
// authentication: under TLS, what a frame's checksum mismatch is in plain
// text.
const alertBadRecordMAC = 20
