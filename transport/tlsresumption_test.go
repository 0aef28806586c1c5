package transport_test

import (
	"crypto/rand"
	"crypto/tls"
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
		cfg.Server = &tls.Config{SessionTicketKey: ticketKey}
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
	impostor := &tls.Config{SessionTicketKey: ticketKey, MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert,
		Certificates: []tls.Certificate{issue(t, rogueCA, "n2", time.Hour, time.Hour)}}
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
