package transport_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// rawConn dials a node and speaks the wire format by hand.
func rawConn(t *testing.T, tr *transport.Transport) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", tr.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	return conn
}

// handshake sends hello and returns the node's reply.
func handshake(t *testing.T, conn net.Conn, hello wire.Hello) wire.Reply {
	t.Helper()
	b, err := wire.AppendHello(nil, &hello)
	require.NoError(t, err)
	_, err = conn.Write(b)
	require.NoError(t, err)
	raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	require.NoError(t, err)
	reply, err := wire.DecodeReply(raw)
	require.NoError(t, err)
	return reply
}

func validHello(lane routing.Lane) wire.Hello {
	return wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion, Lane: uint8(lane), Cluster: "test", Node: "raw"}
}

// closedByPeer waits until the node closes conn.
func closedByPeer(t *testing.T, conn net.Conn) {
	t.Helper()
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the node did not close the connection: %v", err)
	}
	// EOF, or a reset when the node closed with our bytes unread.
}

func TestHandshakeRefusals(t *testing.T) {
	c := newCluster(t, 1, nil)
	tests := []struct {
		name   string
		hello  func(*wire.Hello)
		reason wire.RefuseReason
	}{
		{"wrong cluster", func(h *wire.Hello) { h.Cluster = "other" }, wire.WrongCluster},
		{"unsupported version", func(h *wire.Hello) { h.MinVersion, h.MaxVersion = 9, 12 }, wire.UnsupportedVersion},
		{"bad lane", func(h *wire.Hello) { h.Lane = 7 }, wire.BadLane},
		{"empty node", func(h *wire.Hello) { h.Node = "" }, wire.Refused},
		{"not a member", func(h *wire.Hello) { h.Node = "stranger" }, wire.UnknownNode},
		{"this node's own ID", func(h *wire.Hello) { h.Node = "n1" }, wire.Refused},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := rawConn(t, c.Nodes[0])
			h := validHello(routing.Small)
			tt.hello(&h)
			reply := handshake(t, conn, h)
			assert.Equal(t, tt.reason, reply.Reason)
			assert.Zero(t, reply.Version)
			assert.NotEmpty(t, reply.Message)
			closedByPeer(t, conn)
			waitFor(t, 5*time.Second, "refusal counted", func() bool {
				return c.Nodes[0].Stats().InboundRefused == uint64(i+1)
			})
		})
	}
}

// acceptStrangers lets the hand-written "raw" peer of these tests in.
func acceptStrangers(i int, cfg *transport.Config) { cfg.Security.AcceptUnknownPeers = true }

func TestHandshakeAcceptsOverlappingVersions(t *testing.T) {
	c := newCluster(t, 1, acceptStrangers)
	h := validHello(routing.Small)
	h.MaxVersion = 200 // a newer peer that also speaks ours
	reply := handshake(t, rawConn(t, c.Nodes[0]), h)
	assert.Equal(t, wire.Accepted, reply.Reason)
	assert.Equal(t, wire.MaxVersion, reply.Version)
}

func TestWrongClusterRefusesSends(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.ClusterName = "other"
		}
	})
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, nil)
	require.ErrorIs(t, err, transport.ErrRefused)
	var he *transport.HandshakeError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, wire.WrongCluster, he.Reason)
	waitFor(t, 5*time.Second, "refused message counted", func() bool {
		return c.Nodes[0].Stats().Total().Dropped[transport.ReasonRefused] == 1
	})
}

// TestBadInputClosesOnlyThatConnection sends every kind of bad input the
// reader must survive; after each, a legitimate peer is still served.
func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	c := newCluster(t, 2, acceptStrangers)
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	frame := func(kind wire.FrameKind, stream uint32, payload []byte) []byte {
		return append(wire.AppendFrameHeader(nil, kind, stream, payload), payload...)
	}
	msg := func(h wire.Header, payload []byte) []byte {
		h.PayloadLength = uint32(len(payload))
		return append(wire.AppendHeader(nil, &h), payload...)
	}
	valid := msg(wire.Header{ID: 1, Verb: uint32(verbEcho)}, []byte("hi"))
	badChecksum := frame(wire.FrameBatch, 0, valid)
	badChecksum[len(badChecksum)-1] ^= 0xff
	giant := make([]byte, wire.FrameHeaderSize)
	binary.BigEndian.PutUint32(giant, 1<<31)
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	overrun := msg(wire.Header{ID: 1, Verb: uint32(verbEcho)}, []byte("hi"))
	overrun = overrun[:len(overrun)-1] // the header claims one byte more than the frame holds
	largeHeader := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: 1, PayloadLength: 100 << 10})

	tests := []struct {
		name      string
		handshake bool
		lane      routing.Lane
		bytes     []byte
	}{
		{"random bytes instead of a handshake", false, 0, random},
		{"bad magic", false, 0, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"truncated handshake", false, 0, []byte{0x49, 0x4E, 0x4F}},
		{"frame claiming 2 GiB", true, routing.Small, giant},
		{"bad checksum", true, routing.Small, badChecksum},
		{"truncated frame", true, routing.Small, frame(wire.FrameBatch, 0, valid)[:10]},
		{"truncated payload", true, routing.Small, frame(wire.FrameBatch, 0, valid)[:wire.FrameHeaderSize+3]},
		{"message overruns frame", true, routing.Small, frame(wire.FrameBatch, 0, overrun)},
		{"large header followed by payload", true, routing.Large, frame(wire.FrameLargeBegin, 1, append(largeHeader, 'x'))},
		{"large part of unknown stream", true, routing.Large, frame(wire.FrameLargeMore, 9, []byte("x"))},
		{"large stream begun twice", true, routing.Large, append(frame(wire.FrameLargeBegin, 1, largeHeader), frame(wire.FrameLargeBegin, 1, largeHeader)...)},
		{"a beat from the initiator", true, routing.Large, frame(wire.FrameBeat, 0, nil)},
		{"a ping with a payload", true, routing.Small, append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, []byte("x"))[:4:4], append([]byte{byte(wire.FramePing), 0, 0, 0, 0, 0, 0, 0}, 'x')...)},
		{"batch frame on the large lane", true, routing.Large, frame(wire.FrameBatch, 0, valid)},
		{"random frame body", true, routing.Small, frame(wire.FrameBatch, 0, random)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := rawConn(t, c.Nodes[1])
			if tt.handshake {
				require.Equal(t, wire.Accepted, handshake(t, conn, validHello(tt.lane)).Reason)
			}
			_, err := conn.Write(tt.bytes)
			require.NoError(t, err)
			if tcp, ok := conn.(*net.TCPConn); ok {
				_ = tcp.CloseWrite() // truncated input ends here; the node may have closed already
			}
			closedByPeer(t, conn)

			resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, []byte("still here"))
			require.NoError(t, err)
			assert.Equal(t, "still here", string(resp))
		})
	}
	st := c.Nodes[1].Stats()
	assert.Equal(t, uint64(3), st.InboundRefused, "the three bad handshakes")
	assert.Equal(t, uint64(len(tests)-3), st.InboundMalformed, "every bad frame closed its connection")
	assert.Equal(t, uint64(len(tests)), st.Total().MessagesReceived, "only the legitimate requests reached a handler")
}

// TestDialerRefusesAVersionItDidNotOffer: an acceptor that answers with a
// version outside the range offered is not spoken to.
func TestDialerRefusesAVersionItDidNotOffer(t *testing.T) {
	addr := fakeAcceptor(t, wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion + 7})
	c := newCluster(t, 1, nil)
	c.Members.Add(cluster.Member{ID: "odd", Addr: addr})
	_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), "odd", verbEcho, []byte("x"))
	require.ErrorIs(t, err, transport.ErrRefused)
}

// fakeAcceptor listens on loopback, answers the first connection's
// handshake with reply, then reads what comes until its dialer closes; it
// returns its address.
func fakeAcceptor(t *testing.T, reply wire.Reply) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize)); err != nil {
			return
		}
		_, _ = conn.Write(wire.AppendReply(nil, &reply))
		_, _ = io.Copy(io.Discard, conn)
	}()
	return ln.Addr().String()
}

// failOnceListener returns err from its first Accept, then accepts as
// the listener it wraps.
type failOnceListener struct {
	net.Listener
	err  error
	once sync.Once
}

func (l *failOnceListener) Accept() (net.Conn, error) {
	var err error
	l.once.Do(func() { err = l.err })
	if err != nil {
		return nil, err
	}
	return l.Listener.Accept()
}

// TestAcceptGoesOnAfterAConnectionsError: accept(2) on Linux reports the
// network errors of the connection it was about to return (EPROTO,
// ENETUNREACH...), and fails for want of kernel memory (ENOBUFS, ENOMEM);
// the next call may succeed. The accept loop stopped for good on any such
// error, and every peer was refused from then on, until a restart.
func TestAcceptGoesOnAfterAConnectionsError(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EPROTO, syscall.ENETUNREACH, syscall.ENOBUFS} {
		t.Run(errno.Error(), func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				if i != 1 {
					return
				}
				listen := cfg.Listen
				if listen == nil {
					listen = net.Listen
				}
				cfg.Listen = func(network, addr string) (net.Listener, error) {
					ln, err := listen(network, addr)
					if err != nil {
						return nil, err
					}
					// As net.TCPListener reports it.
					err = &net.OpError{Op: "accept", Net: network, Addr: ln.Addr(), Err: os.NewSyscallError("accept4", errno)}
					return &failOnceListener{Listener: ln, err: err}, nil
				}
			})
			handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
			resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("x"))
			require.NoError(t, err, "n2 accepts again after one failed accept")
			assert.Equal(t, "x", string(resp))
		})
	}
}
