package transport_test

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

// corruptingConn flips the last byte of every write once corrupt is set:
// under TLS, the last byte of a record's authentication tag, as damage on
// the way would.
type corruptingConn struct {
	net.Conn
	corrupt atomic.Bool
	// header: flip a bit of the record's version (its header's third
	// byte) instead, which TLS refuses before it checks the record.
	header bool
}

func (c *corruptingConn) Write(b []byte) (int, error) {
	if c.corrupt.Load() && len(b) > 2 {
		b = append([]byte(nil), b...)
		if c.header {
			b[2] ^= 1
		} else {
			b[len(b)-1] ^= 1
		}
	}
	return c.Conn.Write(b)
}

// TestTLSRecordThatFailsItsCheckIsBadInput: under TLS a damaged or forged
// record fails its authentication (bad_record_mac) where, in plain text,
// the frame's checksum would not match. The connection is closed for it,
// and that is bad input like any other: counted in Stats.BadInput (as a
// checksum mismatch) and logged. It was neither: TLS reports the alert it
// sent as a *net.OpError, which the reader took for a connection that
// broke, so a node under TLS closed connections on damaged bytes without
// a word.
func TestTLSRecordThatFailsItsCheckIsBadInput(t *testing.T) {
	ca := newCA(t, "test")
	c, _ := tlsNodes(t, tlsFor(t, ca, "n1"), tlsFor(t, ca, "n2"))
	victim := c.Nodes[1]
	cert, err := ca.Issue("n1")
	require.NoError(t, err)

	raw, err := net.Dial("tcp", victim.Addr().String())
	require.NoError(t, err)
	cc := &corruptingConn{Conn: raw}
	conn := tls.Client(cc, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, conn.Handshake())
	hello, err := wire.AppendHello(nil, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		Lane: uint8(routing.Small), Cluster: "test", Node: "n1"})
	require.NoError(t, err)
	_, err = conn.Write(hello)
	require.NoError(t, err)
	b, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	require.NoError(t, err)
	reply, err := wire.DecodeReply(b)
	require.NoError(t, err)
	require.Equal(t, wire.Accepted, reply.Reason, reply.Message)

	before := victim.Stats()
	cc.corrupt.Store(true)
	_, err = conn.Write(wire.AppendFrameHeader(nil, wire.FramePing, 0))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, conn) // until the node closes the connection
	waitFor(t, 5*time.Second, "the damaged record counted as bad input", func() bool {
		return victim.Stats().InboundMalformed > before.InboundMalformed
	})
	st := victim.Stats()
	require.Equal(t, before.BadInput[transport.BadInputChecksum]+1, st.BadInput[transport.BadInputChecksum],
		"a record that fails its authentication is damage, as a checksum mismatch is: %v", st.BadInput)
}

// TestTLSBackChannelRecordThatFailsItsCheckIsLogged: the same damage on
// a back channel — a record from the acceptor that fails its
// authentication — closes the connection as bad input from its acceptor,
// and says so in the log, as a bad frame there does. The reader took
// TLS's alert for a connection that broke: the connection ended as
// "closed by peer", with nothing logged.
func TestTLSBackChannelRecordThatFailsItsCheckIsLogged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header bool
		logged string
	}{
		{"authentication", false, "bad record MAC"},
		// A record whose header TLS refuses fails with a
		// tls.RecordHeaderError, not an alert: it was "closed by peer".
		{"header", true, "received record with version"},
	} {
		t.Run(tc.name, func(t *testing.T) { backChannelDamage(t, tc.header, tc.logged) })
	}
}

// backChannelDamage has a fake acceptor write a beat in a damaged record
// (in its header if header is set) and waits for the log naming logged.
func backChannelDamage(t *testing.T, header bool, logged string) {
	ca := newCA(t, "test")
	var logs capturedLogs
	c := transporttest.New(t, 1, transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
		cfg.Security.TLS = tlsFor(t, ca, "n1")
		cfg.Telemetry.Logger = logs.logger()
	}})
	cert, err := ca.Issue("n2")
	require.NoError(t, err)
	server := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: tls.VersionTLS13}
	// The fake peer n2: it accepts one connection, answers its Hello,
	// then writes a beat in a damaged record.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		cc := &corruptingConn{Conn: raw, header: header}
		conn := tls.Server(cc, server)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
		if err != nil {
			return
		}
		if _, err := wire.DecodeHello(b); err != nil {
			return
		}
		reply := wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion})
		if _, err := conn.Write(wire.AppendFrameHeader(reply, wire.FrameBeat, 0)); err != nil {
			return
		}
		cc.corrupt.Store(true)
		_, _ = conn.Write(wire.AppendFrameHeader(nil, wire.FrameBeat, 0))
		_, _ = io.Copy(io.Discard, conn) // until the node closes the connection
	}()
	t.Cleanup(func() {
		ln.Close()
		within(t, done, 15*time.Second, "the fake peer to end")
	})
	c.Members.Add(cluster.Member{ID: "n2", Addr: ln.Addr().String()})

	_ = c.Nodes[0].Send(ctxTimeout(t, 5*time.Second), "n2", verbEcho, []byte("hi"))
	waitFor(t, 5*time.Second, "the damaged record logged as bad input", func() bool {
		return strings.Contains(logs.String(), "bad input from its acceptor")
	})
	require.Contains(t, logs.String(), logged)
}

// TestTLSFileHeaderRecordThatFailsItsCheckIsBadInput: the same damage on
// a file-transfer connection, in the record carrying the file header, is
// bad input too. The header's reader took TLS's alert for a connection
// that broke ("the peer went away"), and closed it without a count or a
// word.
func TestTLSFileHeaderRecordThatFailsItsCheckIsBadInput(t *testing.T) {
	ca := newCA(t, "test")
	c, _ := tlsNodes(t, tlsFor(t, ca, "n1"), tlsFor(t, ca, "n2"))
	victim := c.Nodes[1]
	cert, err := ca.Issue("n1")
	require.NoError(t, err)

	raw, err := net.Dial("tcp", victim.Addr().String())
	require.NoError(t, err)
	cc := &corruptingConn{Conn: raw}
	conn := tls.Client(cc, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, conn.Handshake())
	const laneFile = uint8(routing.NumLanes + 1) // a file transfer's connection
	hello, err := wire.AppendHello(nil, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		Lane: laneFile, Cluster: "test", Node: "n1"})
	require.NoError(t, err)
	_, err = conn.Write(hello)
	require.NoError(t, err)
	b, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	require.NoError(t, err)
	reply, err := wire.DecodeReply(b)
	require.NoError(t, err)
	require.Equal(t, wire.Accepted, reply.Reason, reply.Message)

	before := victim.Stats()
	cc.corrupt.Store(true)
	_, err = conn.Write(wire.AppendFileHeader(nil, &wire.FileHeader{Verb: uint32(verbBootstrap), ID: 1, CreatedAt: time.Now().UnixNano(), Length: 1}))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, conn) // until the node closes the connection
	waitFor(t, 5*time.Second, "the damaged record counted as bad input", func() bool {
		return victim.Stats().BadInput[transport.BadInputChecksum] > before.BadInput[transport.BadInputChecksum]
	})
}
