package transport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// verbUrgentEcho is pinned to the urgent lane by tlsNodes.
const verbUrgentEcho transport.Verb = 50

// tlsFor returns a TLS config for node of ca's cluster, trusting ca only.
func tlsFor(t testing.TB, ca *transporttest.CA, node cluster.NodeID) *transport.TLSConfig {
	t.Helper()
	cfg, err := ca.TLSConfig(node)
	require.NoError(t, err)
	return cfg
}

// issue makes a certificate for node, valid from validFrom ago until
// validFor from now.
func issue(t testing.TB, ca *transporttest.CA, node cluster.NodeID, validFrom, validFor time.Duration) tls.Certificate {
	t.Helper()
	cert, err := ca.IssueValid(node, time.Now().Add(-validFrom), time.Now().Add(validFor))
	require.NoError(t, err)
	return cert
}

// poolOf trusts the given CAs.
func poolOf(cas ...*transporttest.CA) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca.Certificate())
	}
	return pool
}

// ordinaryTLS is what a newcomer writes: ordinary crypto/tls configs, the
// client skipping verification ("either ServerName or InsecureSkipVerify
// must be specified") and the server not asking for client certificates.
// The transport must still verify everything.
func ordinaryTLS(cert tls.Certificate, roots *x509.CertPool) *transport.TLSConfig {
	return &transport.TLSConfig{
		Server: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: roots, ClientAuth: tls.NoClientCert},
		Client: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, InsecureSkipVerify: true},
	}
}

// tlsNodes starts one node per config (nil: plain text), n1, n2..., each
// answering on every connection kind and counting in handled every
// message, stream and file its handlers saw.
func tlsNodes(t *testing.T, configs ...*transport.TLSConfig) (c *transporttest.Cluster, handled *atomic.Int64) {
	t.Helper()
	return tlsNodesWith(t, transporttest.Options{}, configs...)
}

func tlsNodesWith(t *testing.T, o transporttest.Options, configs ...*transport.TLSConfig) (*transporttest.Cluster, *atomic.Int64) {
	t.Helper()
	o.Tweak = func(i int, cfg *transport.Config) {
		cfg.Security.TLS = configs[i]
		cfg.Timeouts.Handshake = 2 * time.Second
		cfg.Lanes.Overrides = map[transport.Verb]routing.Lane{verbUrgentEcho: routing.Urgent}
	}
	c := transporttest.New(t, len(configs), o)
	handled := new(atomic.Int64)
	echo := transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		handled.Add(1)
		return m.Payload, nil
	})
	c.HandleAll(verbEcho, echo)
	c.HandleAll(verbUrgentEcho, echo)
	for _, n := range c.Nodes {
		n.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
			handled.Add(1)
			_, _ = io.Copy(s, s)
			_ = s.CloseWrite()
		}))
		n.HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
			handled.Add(1)
			_, err := io.Copy(io.Discard, ft.Reader())
			return err
		}))
	}
	return c, handled
}

// connKind is one kind of connection a node opens to a peer, each with
// its own TLS handshake: the three message lanes, a stream session, a file
// transfer. try opens one (if none is open) and uses it.
type connKind struct {
	name string
	try  func(ctx context.Context, from *transport.Transport, to cluster.NodeID) error
}

// streamOverTLS opens a stream with opts and has "over TLS" echoed on it.
func streamOverTLS(opts ...transport.StreamOption) func(context.Context, *transport.Transport, cluster.NodeID) error {
	return func(ctx context.Context, from *transport.Transport, to cluster.NodeID) error {
		s, err := from.OpenStream(ctx, to, verbRepair, opts...)
		if err != nil {
			return err
		}
		defer s.Close()
		if _, err := s.Write([]byte("over TLS")); err != nil {
			return err
		}
		if err := s.CloseWrite(); err != nil {
			return err
		}
		got, err := io.ReadAll(s)
		if err == nil && string(got) != "over TLS" {
			err = errors.New("bad echo")
		}
		return err
	}
}

func connKinds(t *testing.T) []connKind {
	src, data := tempFile(t, 64<<10)
	request := func(verb transport.Verb, size int) func(context.Context, *transport.Transport, cluster.NodeID) error {
		return func(ctx context.Context, from *transport.Transport, to cluster.NodeID) error {
			p := makePayload(0, 1, size)
			resp, err := from.Request(ctx, to, verb, p)
			if err == nil && len(resp) != len(p) {
				err = errors.New("short echo")
			}
			return err
		}
	}
	return []connKind{
		{"urgent lane", request(verbUrgentEcho, 100)},
		{"small lane", request(verbEcho, 1000)},
		{"large lane", request(verbEcho, 200<<10)},
		{"stream", streamOverTLS()},
		{"stream on its own connection", streamOverTLS(transport.OwnConnection())},
		{"file", func(ctx context.Context, from *transport.Transport, to cluster.NodeID) error {
			n, err := from.SendFile(ctx, to, verbBootstrap, src, 0, int64(len(data)))
			if err == nil && n != int64(len(data)) {
				err = errors.New("short transfer")
			}
			return err
		}},
	}
}

// requireEveryKind checks that from reaches to on every kind of
// connection, or that each is refused.
func requireEveryKind(t *testing.T, c *transporttest.Cluster, from, to int, refused bool) {
	t.Helper()
	for _, kind := range connKinds(t) {
		err := kind.try(ctxTimeout(t, 10*time.Second), c.Nodes[from], c.ID(to))
		if refused {
			require.ErrorIs(t, err, transport.ErrRefused, "%s from %s to %s", kind.name, c.ID(from), c.ID(to))
		} else {
			require.NoError(t, err, "%s from %s to %s", kind.name, c.ID(from), c.ID(to))
		}
	}
}

// requireEveryKindFindsAnotherNode checks that every kind of connection
// from reaches, at to's address, a node whose certificate names another
// member, and fails as a dial to a stale address does: not a refusal.
func requireEveryKindFindsAnotherNode(t *testing.T, c *transporttest.Cluster, from, to int) {
	t.Helper()
	for _, kind := range connKinds(t) {
		err := kind.try(ctxTimeout(t, 10*time.Second), c.Nodes[from], c.ID(to))
		require.Error(t, err, "%s from %s to %s", kind.name, c.ID(from), c.ID(to))
		require.NotErrorIs(t, err, transport.ErrRefused, "%s from %s to %s", kind.name, c.ID(from), c.ID(to))
		require.ErrorContains(t, err, "is stale", "%s from %s to %s", kind.name, c.ID(from), c.ID(to))
	}
}

func TestMutualTLSOnEveryConnectionKind(t *testing.T) {
	ca := newCA(t, "test")
	c, handled := tlsNodes(t, tlsFor(t, ca, "n1"), tlsFor(t, ca, "n2"))
	requireEveryKind(t, c, 0, 1, false)
	requireEveryKind(t, c, 1, 0, false)
	assert.EqualValues(t, 2*len(connKinds(t)), handled.Load())
	assert.Zero(t, c.Nodes[0].Stats().InboundRefused+c.Nodes[1].Stats().InboundRefused)
}

// TestTLSRefusesOnEveryConnectionKind: a peer whose certificate is from
// an untrusted CA, names another node or cluster, or has expired is refused in both
// directions on every kind of connection, though the good node's own
// tls.Config skips verification and asks for no client certificate; and
// neither side's handlers see anything.
func TestTLSRefusesOnEveryConnectionKind(t *testing.T) {
	ca, rogueCA := newCA(t, "test"), newCA(t, "test") // same cluster, other key
	// n1 also trusts the CA of another cluster, as if one CA served both.
	stagingCA := newCA(t, "staging")
	good := ordinaryTLS(issue(t, ca, "n1", time.Hour, time.Hour), poolOf(ca, stagingCA))
	for _, tt := range []struct {
		name string
		bad  *transport.TLSConfig // n2's
		why  transport.Refusal    // what n1 counts when n2 dials it
	}{
		// The rogue trusts both CAs, so that only n1's checks stand in the
		// way; its URI SAN is the right one.
		{"untrusted CA", mutualTLS(t, issue(t, rogueCA, "n2", time.Hour, time.Hour), poolOf(ca, rogueCA)), transport.RefusedTLS},
		{"another node's certificate", mutualTLS(t, issue(t, ca, "n3", time.Hour, time.Hour), ca.Pool()), transport.RefusedIdentity},
		{"expired", mutualTLS(t, issue(t, ca, "n2", 2*time.Hour, -time.Hour), ca.Pool()), transport.RefusedTLS},
		{"another cluster's certificate", mutualTLS(t, issue(t, stagingCA, "n2", time.Hour, time.Hour), ca.Pool()), transport.RefusedIdentity},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, handled := tlsNodes(t, good, tt.bad)
			if tt.name == "another node's certificate" {
				// n1 takes n3's certificate at n2's address for n2's
				// address gone stale, as without TLS: a failed dial.
				requireEveryKindFindsAnotherNode(t, c, 0, 1)
			} else {
				requireEveryKind(t, c, 0, 1, true) // n1 checks the server
			}
			requireEveryKind(t, c, 1, 0, true) // n1 checks the client
			assert.Zero(t, handled.Load(), "no handler saw anything")
			waitFor(t, 5*time.Second, "n1 counts a refusal per kind", func() bool {
				return c.Nodes[0].Stats().Refusals[tt.why] == uint64(len(connKinds(t)))
			})
		})
	}
}

// mutualTLS is NewMutualTLS, for a test.
func mutualTLS(t testing.TB, cert tls.Certificate, roots *x509.CertPool) *transport.TLSConfig {
	t.Helper()
	cfg, err := transport.NewMutualTLS(cert, roots)
	require.NoError(t, err)
	return cfg
}

func TestTLSRefusesPlainText(t *testing.T) {
	ca := newCA(t, "test")
	c, _ := tlsNodes(t, nil, tlsFor(t, ca, "n2")) // n1 speaks plain text
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.ErrorIs(t, err, transport.ErrRefused, "the plain-text node learns at once it is refused")
	waitFor(t, 5*time.Second, "plain text refused", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedTLS] > 0
	})
}

// TestTLSVerifyPeerOnlyAddsChecks: VerifyPeer runs after the identity
// rule, with the node it was checked against; it can refuse a peer, never
// admit one the identity rule refused.
func TestTLSVerifyPeerOnlyAddsChecks(t *testing.T) {
	ca := newCA(t, "test")
	var seen atomic.Pointer[cluster.NodeID]
	admitAll := func(cfg *transport.TLSConfig) *transport.TLSConfig {
		cfg.VerifyPeer = func(cs tls.ConnectionState, clusterName string, node cluster.NodeID) error {
			seen.Store(&node)
			return nil
		}
		return cfg
	}
	c, _ := tlsNodes(t, admitAll(tlsFor(t, ca, "n1")), admitAll(tlsFor(t, ca, "n3")))
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
	// n2 holds n3's certificate: taken, as without TLS, for n3 found at
	// n2's stale address, a failed dial, not a refusal for good.
	require.ErrorIs(t, err, transport.ErrConnectionReset, "n2 holds n3's certificate")
	require.NotErrorIs(t, err, transport.ErrRefused)
	require.Nil(t, seen.Load(), "VerifyPeer never saw the impostor")

	errNo := errors.New("not today")
	refuseAll := tlsFor(t, ca, "n2")
	refuseAll.VerifyPeer = func(tls.ConnectionState, string, cluster.NodeID) error { return errNo }
	c, _ = tlsNodes(t, admitAll(tlsFor(t, ca, "n1")), refuseAll)
	_, err = c.Nodes[1].Request(ctxTimeout(t, 5*time.Second), c.ID(0), verbEcho, []byte("x"))
	require.ErrorIs(t, err, transport.ErrRefused, "n2's hook refuses n1 as a server")
	require.ErrorIs(t, err, errNo)
	_, err = c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
	require.ErrorIs(t, err, transport.ErrRefused, "n2's hook refuses n1 as a client")
	require.Equal(t, cluster.NodeID("n2"), *seen.Load(), "n1's hook ran, for n2")
	waitFor(t, 5*time.Second, "n2 counts its refusal", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedIdentity] == 1
	})
}

// TestTLSConfigRefusedWhenInsecure: a configuration that would not verify
// peers is refused by Validate, with a clear error, instead of running.
func TestTLSConfigRefusedWhenInsecure(t *testing.T) {
	ca := newCA(t, "test")
	cert := issue(t, ca, "n1", time.Hour, time.Hour)
	for _, tt := range []struct {
		name string
		tls  *transport.TLSConfig
		want string
	}{
		{"skip verification, no roots", &transport.TLSConfig{
			Client: &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}}, "no trusted roots"},
		{"empty roots", ordinaryTLS(cert, x509.NewCertPool()), "no trusted roots"},
		{"no certificate", &transport.TLSConfig{Client: &tls.Config{RootCAs: ca.Pool()}}, "no certificate"},
		{"nothing", &transport.TLSConfig{}, "no trusted roots"},
		{"its own verification", &transport.TLSConfig{Credentials: tlsFor(t, ca, "n1").Credentials,
			Server: &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }}},
			"GetConfigForClient"},
		{"credentials not made by a constructor", &transport.TLSConfig{Credentials: &transport.Credentials{}}, "LoadCredentials"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Security.TLS = tt.tls
			err := cfg.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
	_, err := transport.NewMutualTLS(cert, nil)
	require.ErrorContains(t, err, "no trusted roots", "nil would mean the system's roots")
	_, err = transport.NewMutualTLS(cert, x509.NewCertPool())
	require.ErrorContains(t, err, "no trusted roots")
}

// TestTLSSideTakesTheOthersMaterial: a Client config alone, with its
// certificate and roots, serves both ends of every connection.
func TestTLSSideTakesTheOthersMaterial(t *testing.T) {
	ca := newCA(t, "test")
	clientOnly := func(node cluster.NodeID) *transport.TLSConfig {
		cert := issue(t, ca, node, time.Hour, time.Hour)
		return &transport.TLSConfig{Client: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool()}}
	}
	c, _ := tlsNodes(t, clientOnly("n1"), clientOnly("n2"))
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("x"))
	require.NoError(t, err)
}

// TestTLSWarnsAboutItsOwnCertificate: a node whose certificate names
// another node starts, says so, and is refused by its peers.
func TestTLSWarnsAboutItsOwnCertificate(t *testing.T) {
	ca := newCA(t, "test")
	logs := &capturedLogs{}
	cfg := validConfig()
	cfg.Telemetry.Logger = logs.logger()
	cfg.Security.TLS = tlsFor(t, ca, "n9")
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	tr.Close()
	require.Contains(t, logs.String(), "does not name it")
}

// tlsFiles writes a node's certificate, key and roots where MutualTLS
// reads them, replacing what was there.
type tlsFiles struct{ cert, key, ca string }

func newTLSFiles(t testing.TB) tlsFiles {
	dir := t.TempDir()
	return tlsFiles{cert: dir + "/node.pem", key: dir + "/node-key.pem", ca: dir + "/ca.pem"}
}

func (f tlsFiles) write(t testing.TB, cert *tls.Certificate, roots ...*transporttest.CA) {
	t.Helper()
	if cert != nil {
		certPEM, keyPEM, err := transporttest.EncodePEM(*cert)
		require.NoError(t, err)
		writeAtomically(t, f.cert, certPEM)
		writeAtomically(t, f.key, keyPEM)
	}
	if len(roots) > 0 {
		var caPEM []byte
		for _, ca := range roots {
			caPEM = append(caPEM, ca.PEM()...)
		}
		writeAtomically(t, f.ca, caPEM)
	}
}

// writeAtomically replaces path as a careful deployment does: a reader
// sees the old file or the new, never a part.
func writeAtomically(t testing.TB, path string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", data, 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
}

// capturedLogs keeps what a transport logs, or a process writes, for a
// test to read while it is written.
type capturedLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *capturedLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *capturedLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *capturedLogs) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestTLSHelloStillBoundByHandshakeTimeout: a TLS peer that finishes the
// TLS handshake and then sends no Hello is cut off at Timeouts.Handshake.
// (The socket's wrapper for waking readers took the handshake's deadline
// for a wake-up, and the acceptor waited for the Hello for ever.)
func TestTLSHelloStillBoundByHandshakeTimeout(t *testing.T) {
	ca := newCA(t, "test")
	c, _ := tlsNodes(t, tlsFor(t, ca, "n1"), tlsFor(t, ca, "n2"))
	cert, err := ca.Issue("n1")
	require.NoError(t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	conn, err2 := tls.Dial("tcp", c.Nodes[1].Addr().String(), cfg)
	require.NoError(t, err2)
	defer conn.Close()
	require.NoError(t, conn.Handshake())
	// Timeouts.Handshake is 2 s in tlsNodes: the acceptor must give up by then.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(6*time.Second)))
	start := time.Now()
	_, err = io.ReadAll(conn)
	require.Less(t, time.Since(start), 5*time.Second, "the acceptor waited for the Hello past its handshake timeout (err %v)", err)
	waitFor(t, 5*time.Second, "a timeout refusal", func() bool {
		return c.Nodes[1].Stats().Refusals[transport.RefusedTimeout] > 0
	})
}

// TestTLSDialBoundByOneHandshakeTimeout: Timeouts.Handshake bounds a
// handshake, on either side (Config) — on the dialling side, the TLS
// handshake and the Hello/Reply after it together, as the acceptor
// bounds them. A peer that takes most of the timeout over TLS and then
// never replies held the dial for twice the timeout: the Hello got a
// fresh Timeouts.Handshake of its own.
func TestTLSDialBoundByOneHandshakeTimeout(t *testing.T) {
	const handshake = time.Second
	ca := newCA(t, "test")
	c := transporttest.New(t, 1, transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
		cfg.Security.TLS = tlsFor(t, ca, "n1")
		cfg.Timeouts.Handshake = handshake
	}})
	cert, err := ca.Issue("n2")
	require.NoError(t, err)
	server := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS13}
	// The fake peer: slow over TLS (0.7 of the timeout), then silent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		time.Sleep(handshake * 7 / 10)
		tc := tls.Server(conn, server)
		if tc.Handshake() == nil {
			_, _ = io.Copy(io.Discard, tc) // reads the Hello, answers nothing
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		within(t, done, 10*time.Second, "the fake peer to end")
	})
	c.Members.Add(cluster.Member{ID: "n2", Addr: ln.Addr().String()})

	start := time.Now()
	nc, err := transport.DialLane(ctxTimeout(t, 30*time.Second), c.Nodes[0], "n2", routing.Small)
	took := time.Since(start)
	if nc != nil {
		nc.Close()
	}
	require.Error(t, err)
	require.Less(t, took, handshake*13/10, "the dial took %v with Timeouts.Handshake %v (err %v)", took, handshake, err)
}
