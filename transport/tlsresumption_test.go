package transport_test

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestTLSSessionResumptionDoesNotStandInForTheCertificate: a node whose
// Client template keeps a session cache, and whose peers' Server
// templates share a session ticket key (as a fleet behind one name often
// does), dials a peer's address and finds there an impostor holding only
// that key: no certificate of the cluster's CA. The dial must fail. (It
// resumed the session the real peer had ticketed: crypto/tls then hands
// the transport the certificate the real peer showed back then, which
// names the node dialled, and the impostor was taken for it.)
func TestTLSSessionResumptionDoesNotStandInForTheCertificate(t *testing.T) {
	ca, rogueCA := newCA(t, "test"), newCA(t, "test")
	var ticketKey [32]byte
	_, err := rand.Read(ticketKey[:])
	require.NoError(t, err)
	withTemplates := func(cfg *transport.TLSConfig) *transport.TLSConfig {
		cfg.Server = ticketKeyed(&tls.Config{}, ticketKey)
		cfg.Client = &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(16)}
		return cfg
	}
	c, _ := tlsNodes(t, withTemplates(tlsFor(t, ca, "n1")), withTemplates(tlsFor(t, ca, "n2")))
	nc, err := transport.DialLane(ctxTimeout(t, 5*time.Second), c.Nodes[0], "n2", routing.Small)
	require.NoError(t, err, "n1 reaches the real n2, which gives it a session ticket")
	nc.Close()

	// n2 goes away; the impostor takes its address. Its certificate is
	// from another CA: a full handshake would refuse it.
	addr := c.Nodes[1].Addr().String()
	require.NoError(t, c.Nodes[1].Close())
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	impostor := ticketKeyed(&tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert,
		Certificates: []tls.Certificate{issue(t, rogueCA, "n2", time.Hour, time.Hour)}}, ticketKey)
	var resumed, accepted atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(conn, impostor)
				if tc.Handshake() != nil {
					return
				}
				if tc.ConnectionState().DidResume {
					resumed.Add(1)
				}
				buf := make([]byte, wire.MaxHandshakeSize)
				raw, err := wire.ReadHandshake(tc, buf)
				if err != nil {
					return
				}
				hello, err := wire.DecodeHello(raw)
				if err != nil {
					return
				}
				version, _ := wire.Negotiate(&hello)
				reply := wire.Reply{Version: version, Reason: wire.Accepted,
					Capabilities: hello.Capabilities & wire.CapAcceptorID, Message: "n2"}
				if _, err := tc.Write(wire.AppendReply(nil, &reply)); err != nil {
					return
				}
				accepted.Add(1)
				_, _ = io.Copy(io.Discard, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})

	nc, err = transport.DialLane(ctxTimeout(t, 5*time.Second), c.Nodes[0], "n2", routing.Small)
	if nc != nil {
		nc.Close()
	}
	require.Error(t, err, "n1 took the impostor for n2 (sessions resumed: %d)", resumed.Load())
	require.Zero(t, accepted.Load(), "n1 sent the impostor its Hello as n2's peer")
}

// TestTLSAcceptorTakesNoTicketForACertificate: a node whose Server
// template has a session ticket key shared with its peers' is dialled by
// someone holding that key and nothing else — no certificate of the
// cluster's CA — who seals a ticket naming n2's certificate (public:
// every handshake shows it) and claims to be n2. The node must refuse it.
// (It resumed the session: crypto/tls gives the verification the
// certificate sealed in the ticket, which passed the chain and the
// identity rule, and the key holder was served as n2.)
func TestTLSAcceptorTakesNoTicketForACertificate(t *testing.T) {
	ca := newCA(t, "test")
	var ticketKey [32]byte
	_, err := rand.Read(ticketKey[:])
	require.NoError(t, err)
	withTicketKey := func(cfg *transport.TLSConfig) *transport.TLSConfig {
		cfg.Server = ticketKeyed(&tls.Config{}, ticketKey)
		return cfg
	}
	n2 := withTicketKey(tlsFor(t, ca, "n2"))
	c, handled := tlsNodes(t, withTicketKey(tlsFor(t, ca, "n1")), n2)

	// The forger's session: a secret of its own, n2's certificate.
	secret := make([]byte, 32)
	_, err = rand.Read(secret)
	require.NoError(t, err)
	n2Cert := n2.Credentials.Certificate().Raw
	server, err := tls.ParseSessionState(sessionStateBytes(false, secret, n2Cert))
	require.NoError(t, err)
	ticket, err := ticketKeyed(&tls.Config{}, ticketKey).EncryptTicket(tls.ConnectionState{}, server)
	require.NoError(t, err)
	client, err := tls.ParseSessionState(sessionStateBytes(true, secret, n2Cert))
	require.NoError(t, err)
	resumption, err := tls.NewResumptionState(ticket, client)
	require.NoError(t, err)

	served, resumed := claimN2(t, c.Nodes[0].Addr().String(), oneSession{resumption})
	require.False(t, served, "n1 took the ticket's holder for n2 (resumed: %v)", resumed)
	require.Zero(t, handled.Load())
	waitFor(t, 5*time.Second, "n1 counts a TLS refusal", func() bool {
		return c.Nodes[0].Stats().Refusals[transport.RefusedTLS] == 1
	})
}

// claimN2 dials addr over TLS, with no certificate and sessions from
// cache, claims to be n2 of cluster "test", and reports whether it was
// accepted and whether its TLS session was resumed.
func claimN2(t *testing.T, addr string, cache tls.ClientSessionCache) (served, resumed bool) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true, ClientSessionCache: cache})
	if err != nil {
		return false, false
	}
	defer conn.Close()
	resumed = conn.ConnectionState().DidResume
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	hello := wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion, Lane: uint8(routing.Small),
		Cluster: "test", Node: "n2"}
	out, err := wire.AppendHello(nil, &hello)
	require.NoError(t, err)
	if _, err := conn.Write(out); err != nil {
		return false, resumed
	}
	raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	if err != nil {
		return false, resumed // refused by the TLS layer
	}
	reply, err := wire.DecodeReply(raw)
	require.NoError(t, err)
	return reply.Reason == wire.Accepted, resumed
}

// sessionStateBytes encodes a TLS 1.3 session (TLS_AES_128_GCM_SHA256)
// as tls.SessionState.Bytes does, for a client or a server, with secret
// and the peer's certificate.
func sessionStateBytes(client bool, secret, peerCert []byte) []byte {
	u24 := func(b []byte, n int) []byte { return append(b, byte(n>>16), byte(n>>8), byte(n)) }
	now := uint64(time.Now().Unix())
	b := binary.BigEndian.AppendUint16(nil, tls.VersionTLS13)
	b = append(b, map[bool]byte{false: 1, true: 2}[client])
	b = binary.BigEndian.AppendUint16(b, tls.TLS_AES_128_GCM_SHA256)
	b = binary.BigEndian.AppendUint64(b, now)
	b = append(append(b, byte(len(secret))), secret...)
	b = u24(b, 0)    // extra
	b = append(b, 0) // extended master secret
	b = append(b, 0) // early data
	b = u24(b, 3+len(peerCert)+2)
	b = append(u24(b, len(peerCert)), peerCert...)
	b = append(b, 0, 0) // the certificate's extensions
	b = u24(b, 0)       // verified chains
	if client {
		b = binary.BigEndian.AppendUint64(b, now+3600) // use by
		b = binary.BigEndian.AppendUint32(b, 0)        // age add
	}
	return b
}

// oneSession is a client session cache holding one session for every
// server.
type oneSession struct{ state *tls.ClientSessionState }

func (s oneSession) Get(string) (*tls.ClientSessionState, bool) { return s.state, true }
func (s oneSession) Put(string, *tls.ClientSessionState)        {}

// ticketKeyed returns cfg sealing and opening session tickets with key,
// as servers that share a ticket key do.
func ticketKeyed(cfg *tls.Config, key [32]byte) *tls.Config {
	cfg.SetSessionTicketKeys([][32]byte{key})
	return cfg
}
