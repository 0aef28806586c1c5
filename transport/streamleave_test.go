package transport_test

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// startAlone starts node id on loopback with members, its own membership.
func startAlone(t *testing.T, id cluster.NodeID, members cluster.Membership) *transport.Transport {
	t.Helper()
	tr, err := transport.New(transporttest.Config(id, "test", members))
	require.NoError(t, err)
	tr.Start()
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestStreamFromANodeThatLeftIsNotServed: n1's membership drops n2 (n2
// was removed from the cluster, and has not heard yet). A node that left
// is not served: its message connections are closed, and a new one is
// refused at its handshake. Its stream session to n1 was left open, and
// each new stream n2 opened on it still ran n1's handler.
func TestStreamFromANodeThatLeftIsNotServed(t *testing.T) {
	m1 := cluster.NewStatic()
	n1 := startAlone(t, "n1", m1)
	var served atomic.Int32
	n1.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		served.Add(1)
		_, _ = s.Write([]byte("ok"))
		_ = s.CloseWrite()
	}))
	n2 := startAlone(t, "n2", cluster.NewStatic(cluster.Member{ID: "n1", Addr: n1.Addr().String()}))
	m1.Add(cluster.Member{ID: "n2", Addr: n2.Addr().String()})

	s, err := n2.OpenStream(ctxTimeout(t, 5*time.Second), "n1", verbRepair)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.Eventually(t, func() bool { return served.Load() == 1 }, 5*time.Second, time.Millisecond)

	m1.Remove("n2")
	// The message lanes: n2's Request is refused (its connection closed,
	// its next one refused as an unknown node).
	n1.Handle(1, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) { return nil, nil }))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = n2.Request(ctx, "n1", 1, []byte("x"))
	require.Error(t, err, "n1 served a request from n2, which left its membership")

	s, err = n2.OpenStream(ctxTimeout(t, 5*time.Second), "n1", verbRepair)
	if err == nil {
		s.Close()
	}
	assert.ErrorIs(t, err, transport.ErrRefused, "n1 accepted a stream from n2, which left its membership")
	assert.Equal(t, int32(1), served.Load(), "n1 ran its stream handler for n2, which left its membership")
}

// TestDiallingAStreamOrAFileEndsWithTheTransportOrTheLeave: n2 takes the TCP
// connection and never answers its handshake (a frozen process). An
// OpenStream or a SendFile dialling it waited out the whole handshake
// timeout, whatever happened meanwhile: the transport's Close, or n2's
// leaving, which end every other wait for the peer at once (a lane's
// dial, a stream's greeting), left it dialling, and it then failed with
// the handshake's timeout rather than ErrClosed or ErrPeerLeft.
func TestDiallingAStreamOrAFileEndsWithTheTransportOrTheLeave(t *testing.T) {
	for _, how := range []string{"close", "leave"} {
		for _, what := range []string{"session", "own", "file"} {
			t.Run(how+"/"+what, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				defer ln.Close()
				accepted := make(chan net.Conn, 4)
				go func() {
					for {
						conn, err := ln.Accept()
						if err != nil {
							close(accepted)
							return
						}
						accepted <- conn // held, never answered
					}
				}()
				defer func() {
					ln.Close()
					for conn := range accepted {
						conn.Close()
					}
				}()
				members := cluster.NewStatic(cluster.Member{ID: "n2", Addr: ln.Addr().String()})
				cfg := transporttest.Config("n1", "test", members)
				cfg.Timeouts.Handshake = time.Minute // the wait the test must not see out
				n1, err := transport.New(cfg)
				require.NoError(t, err)
				n1.Start()
				defer n1.Close()

				opened := make(chan error, 1)
				go func() {
					if what == "file" {
						f, err := os.Open(os.Args[0]) // any regular file
						if err == nil {
							defer f.Close()
							_, err = n1.SendFile(context.Background(), "n2", verbBootstrap, f, 0, 1)
						}
						opened <- err
						return
					}
					var opts []transport.StreamOption
					if what == "own" {
						opts = append(opts, transport.OwnConnection())
					}
					s, err := n1.OpenStream(context.Background(), "n2", verbRepair, opts...)
					if err == nil {
						s.Close()
					}
					opened <- err
				}()
				var held net.Conn
				select {
				case held = <-accepted:
				case <-time.After(5 * time.Second):
					t.Fatalf("%s did not dial", what)
				}
				defer held.Close()
				// (still dialling, it returns once its handshake times out)
				endOpening(t, how, n1, members, opened, 5*time.Second)
			})
		}
	}
}

// TestAStreamWhoseGreetingIsUnansweredEndsWithTheTransportOrTheLeave: a
// stream's opening goes on after its connection's dial, with the verb
// and the acceptor's answer to it; the peer leaving or the transport
// closing then ended the opening with the error of the connection they
// closed, which did not say why, where the same leave or close during the
// dial fails it with ErrPeerLeft or ErrClosed
// (TestDiallingAStreamOrAFileEndsWithTheTransportOrTheLeave).
func TestAStreamWhoseGreetingIsUnansweredEndsWithTheTransportOrTheLeave(t *testing.T) {
	for _, how := range []string{"close", "leave"} {
		for _, mode := range streamModes {
			t.Run(how+"/"+mode.name, func(t *testing.T) {
				members := cluster.NewStatic()
				n2 := startAlone(t, "n2", members)
				n2.HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) { <-ctx.Done() }))
				held := make(chan struct{})
				// The acceptor's handshake reply passes, and nothing after
				// it: the answer to the stream's verb never comes.
				relay := relayProxy(t, n2.Addr().String(), nil, func(total int64, b []byte) ([]byte, bool) {
					if total == 0 {
						return b, true
					}
					<-held
					return nil, false
				})
				t.Cleanup(func() { close(held) }) // registered after the relay's: runs before its
				n1 := startAlone(t, "n1", members)
				members.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
				members.Add(cluster.Member{ID: "n2", Addr: relay})

				opened := make(chan error, 1)
				go func() {
					s, err := n1.OpenStream(context.Background(), "n2", verbRepair, mode.opts...)
					if err == nil {
						s.Close()
					}
					opened <- err
				}()
				waitFor(t, 5*time.Second, "the verb answered, and the answer held", func() bool {
					return len(n2.Health().Peers) == 1 && n2.Health().Peers[0].StreamsIn == 1
				})
				endOpening(t, how, n1, members, opened, 10*time.Second)
			})
		}
	}
}

// endOpening closes n1 (how "close") or has n2 leave its membership
// ("leave"), and requires the opening that reports on opened to end
// within wait with ErrClosed or ErrPeerLeft.
func endOpening(t *testing.T, how string, n1 *transport.Transport, members *cluster.Static, opened <-chan error, wait time.Duration) {
	t.Helper()
	want := transport.ErrClosed
	if how == "close" {
		n1.Close()
	} else {
		members.Remove("n2")
		want = transport.ErrPeerLeft
	}
	select {
	case err := <-opened:
		assert.ErrorIs(t, err, want)
	case <-time.After(wait):
		t.Fatalf("the opening still waits %v after the %s", wait, how)
	}
}
