package transport_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

func TestCloseTwiceAndErrClosed(t *testing.T) {
	c := newCluster(t, 2, nil)
	n := c.Nodes[0]
	require.NoError(t, n.Close())
	require.NoError(t, n.Close())
	err := n.Send(context.Background(), c.ID(1), verbData, []byte("x"))
	assert.ErrorIs(t, err, transport.ErrClosed)
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = n.Request(ctxTimeout(t, time.Second), c.ID(1), verbEcho, nil)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.ErrorIs(t, n.Serve(), net.ErrClosed)
}

// requestHeldByPeer starts a request from n1 that n2's handler holds until
// the test ends, and returns once the handler has it; the channel gets the
// request's error.
func requestHeldByPeer(t *testing.T, c *transporttest.Cluster) <-chan error {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	started := make(chan struct{}, 1)
	c.Nodes[1].Handle(verbBlock, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started <- struct{}{}
		<-release
		return nil, nil
	}))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, time.Minute), c.ID(1), verbBlock, nil)
		errc <- err
	}()
	<-started
	return errc
}

func TestCloseFailsWaitingRequests(t *testing.T) {
	c := newCluster(t, 2, nil)
	errc := requestHeldByPeer(t, c)
	require.NoError(t, c.Nodes[0].Close())
	assert.ErrorIs(t, <-errc, net.ErrClosed)
}

func TestShutdownDrainsQueuedMessages(t *testing.T) {
	var got atomic.Int64
	c := newCluster(t, 2, nil)
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	const n = 5000
	for i := range n {
		sendRetrying(t, c.Nodes[0], c.ID(1), verbData, makePayload(0, uint64(i), 100))
	}
	require.NoError(t, c.Nodes[0].Shutdown(ctxTimeout(t, 10*time.Second)))
	st := c.Nodes[0].Stats().Total()
	assert.Equal(t, uint64(n), st.MessagesSent, "every queued message was written before close")
	waitFor(t, 10*time.Second, "all delivered", func() bool { return got.Load() == n })
}

// responseHeldOnTheLink has n2 answer a request of n1's with size bytes
// while n2's side of the link between them is congested (a paused proxy),
// and returns once the answer is being written. The request's outcome
// comes on the channel (nil: the whole answer); resuming the proxy lets
// the answer go on.
func responseHeldOnTheLink(t *testing.T, c *transporttest.Cluster, verb transport.Verb, size int) (<-chan error, *pausableProxy) {
	answered := make(chan struct{})
	c.Nodes[1].Handle(verb, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		close(answered)
		return make([]byte, size), nil
	}))
	proxy := newPausableProxy(t, c.Nodes[1].Addr().String())
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: proxy.addr}) // n1 reaches n2 through the proxy
	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, 5*time.Second), c.ID(1), verbData, []byte("hi")))
	require.NoError(t, c.WaitConnected(ctxTimeout(t, 5*time.Second), 0, 1))
	proxy.pause()
	done := make(chan error, 1)
	go func() {
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verb, []byte("get"))
		if err == nil && len(resp) != size {
			err = errors.New("a short response")
		}
		done <- err
	}()
	<-answered
	waitFor(t, 5*time.Second, "the response being written", func() bool { return proxy.held.Load() > 0 })
	return done, proxy
}

// TestShutdownDrainsResponses: a response n2 has queued for n1 (its
// handler returned, the reply writer is writing it slowly, n1's side of
// the link being congested) is a queued message: Shutdown lets it go out.
// It closed the connection under it instead, and n1's request failed with
// ErrConnectionReset although its answer was ready.
func TestShutdownDrainsResponses(t *testing.T) {
	c := newCluster(t, 2, nil)
	done, proxy := responseHeldOnTheLink(t, c, 212, 24<<20)
	shut := make(chan error, 1)
	go func() { shut <- c.Nodes[1].Shutdown(ctxTimeout(t, 30*time.Second)) }()
	waitFor(t, 5*time.Second, "n2 shutting down", func() bool { return shuttingDown(c.Nodes[1]) })
	proxy.resume()
	require.NoError(t, within(t, done, 30*time.Second, "the response"), "queued before Shutdown began")
	require.NoError(t, within(t, shut, 30*time.Second, "Shutdown"))
}

// TestShutdownWaitsForTheResponseToLeaveTheSocket: Shutdown returns once
// the peer's kernel has taken in what it wrote, not once the writes
// returned. It closed its connections with megabytes of a response still
// in the socket's send queue; the requester's next bytes (its ping, any
// message) then reached a closed socket, the kernel reset the connection
// and threw the rest away, and the request failed with
// ErrConnectionReset although Shutdown had returned nil.
func TestShutdownWaitsForTheResponseToLeaveTheSocket(t *testing.T) {
	c := newCluster(t, 2, nil)
	done, proxy := responseHeldOnTheLink(t, c, 217, 24<<20)
	// n1's next message is held on its way to n2 until n2 has shut down.
	proxy.up.pause()
	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, 5*time.Second), c.ID(1), verbData, []byte("late")))
	waitFor(t, 5*time.Second, "n1's message held", func() bool { return proxy.up.held.Load() > 0 })
	shut := make(chan error, 1)
	go func() { shut <- c.Nodes[1].Shutdown(ctxTimeout(t, 30*time.Second)) }()
	waitFor(t, 5*time.Second, "n2 shutting down", func() bool { return shuttingDown(c.Nodes[1]) })
	proxy.resume()
	require.NoError(t, within(t, shut, 30*time.Second, "Shutdown"))
	proxy.up.resume() // reaches n2's closed socket
	require.NoError(t, within(t, done, 30*time.Second, "the response"), "written before Shutdown returned")
}

// TestShutdownEndsWhenResponsesDieWithTheirConnection: n2, with no
// outbound lane of its own, shuts down while a response it queued is
// being written into a congested link; then the requester goes away, and
// the connection's end fails the response. Nothing is left to wait for,
// but no one told Shutdown, which waited for its context.
func TestShutdownEndsWhenResponsesDieWithTheirConnection(t *testing.T) {
	c := newCluster(t, 2, nil)
	done, _ := responseHeldOnTheLink(t, c, 215, 24<<20)
	shut := make(chan error, 1)
	go func() { shut <- c.Nodes[1].Shutdown(ctxTimeout(t, 30*time.Second)) }()
	waitFor(t, 5*time.Second, "n2 shutting down", func() bool { return shuttingDown(c.Nodes[1]) })
	require.NoError(t, c.Nodes[0].Close()) // the requester goes: the response fails with its connection
	within(t, done, 10*time.Second, "the request's end")
	require.NoError(t, within(t, shut, 5*time.Second, "Shutdown, with nothing left to wait for"))
}

// TestShutdownWaitsForRequestsBeingHandled: Shutdown waits for the
// handler of a request it found running and writes its answer; a request
// that arrives meanwhile is answered at once with ErrOverloaded, so its
// caller can ask another node, and does not keep Shutdown waiting. The
// running request's answer was cut off by the close.
func TestShutdownWaitsForRequestsBeingHandled(t *testing.T) {
	const verbGet transport.Verb = 213
	c := newCluster(t, 2, nil)
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // before the cluster closes, which waits for handlers
	c.Nodes[1].Handle(verbGet, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
		started <- struct{}{}
		<-release
		return []byte("answer"), nil
	}))
	first := make(chan error, 1)
	go func() {
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbGet, nil)
		if err == nil && string(resp) != "answer" {
			err = errors.New("a wrong answer")
		}
		first <- err
	}()
	within(t, started, 10*time.Second, "the first request's handler")
	shut := make(chan error, 1)
	go func() { shut <- c.Nodes[1].Shutdown(ctxTimeout(t, 30*time.Second)) }()
	waitFor(t, 5*time.Second, "n2 shutting down", func() bool { return shuttingDown(c.Nodes[1]) })
	_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbGet, nil)
	require.ErrorIs(t, err, transport.ErrOverloaded, "a request that came after Shutdown began")
	assert.ErrorContains(t, err, "shutting down")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was being handled", err)
	default:
	}
	releaseAll()
	require.NoError(t, within(t, first, 10*time.Second, "the first request"), "handled when Shutdown began")
	require.NoError(t, within(t, shut, 10*time.Second, "Shutdown"))
}

func TestShutdownGivesUpWithContext(t *testing.T) {
	// The peer never answers (its listener never accepts: the dial hangs
	// in its handshake, Timeouts.Handshake), so the queue never drains:
	// Shutdown returns the context's error and the queued message fails
	// as closed. (A refused dial fails it once Shutdown has begun.)
	ghost, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ghost.Close()
	members := cluster.NewStatic(cluster.Member{ID: "ghost", Addr: ghost.Addr().String()})
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr, cfg.Membership, cfg.Telemetry.Logger = "n1", "test", "127.0.0.1:0", members, quietLogger
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	require.NoError(t, tr.Send(context.Background(), "ghost", verbData, []byte("x")))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, tr.Shutdown(ctx), context.DeadlineExceeded)
	st := tr.Stats().Total()
	assert.Equal(t, uint64(1), st.Dropped[transport.ReasonClosed])
}

// TestShutdownCutShortByCloseSaysSo: a Close while Shutdown drains fails
// what is left, and Shutdown returned nil, as if everything had gone out.
// It returns ErrClosed; Shutdowns that drain together both return nil.
func TestShutdownCutShortByCloseSaysSo(t *testing.T) {
	// The ghost's listener never accepts: the dial hangs in its handshake
	// (Timeouts.Handshake), and the message waits. (A refused dial fails
	// it once Shutdown has begun.)
	ghost, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ghost.Close()
	members := cluster.NewStatic(cluster.Member{ID: "ghost", Addr: ghost.Addr().String()})
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr, cfg.Membership, cfg.Telemetry.Logger = "n1", "test", "127.0.0.1:0", members, quietLogger
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	require.NoError(t, tr.Send(context.Background(), "ghost", verbData, []byte("x"))) // never drains
	shut := make(chan error, 1)
	go func() { shut <- tr.Shutdown(ctxTimeout(t, 10*time.Second)) }()
	waitFor(t, 5*time.Second, "the Shutdown began", func() bool { return tr.Health().Closed })
	require.NoError(t, tr.Close())
	assert.ErrorIs(t, within(t, shut, 10*time.Second, "Shutdown"), transport.ErrClosed)
	assert.Equal(t, uint64(1), tr.Stats().Total().Dropped[transport.ReasonClosed])

	c := newCluster(t, 2, nil)
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("x")))
	both := make(chan error, 2)
	for range 2 {
		go func() { both <- c.Nodes[0].Shutdown(ctxTimeout(t, 10*time.Second)) }()
	}
	for range 2 {
		assert.NoError(t, within(t, both, 10*time.Second, "Shutdown"), "Shutdowns that drained together")
	}
}

// TestPeerRestart: messages sent while the peer is down wait and are
// delivered, in order, once it is back on the same address; requests with
// a deadline fail with a reason. Nothing vanishes.
func TestPeerRestart(t *testing.T) {
	c := newCluster(t, 2, nil)
	seqs := make(chan uint64, 1000)
	handler := transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		_, seq, ok := checkPayload(m.Payload)
		if !ok {
			return nil, errors.New("corrupt")
		}
		seqs <- seq
		return nil, nil
	})
	c.Nodes[1].Handle(verbData, handler)
	for i := range 100 {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, makePayload(0, uint64(i), 100)))
	}
	for i := range 100 {
		require.Equal(t, uint64(i), <-seqs)
	}

	// Take n2 down; n1 notices its connection closed.
	addr := c.Nodes[1].Addr().String()
	require.NoError(t, c.Nodes[1].Close())
	lane := func() transport.ConnStats { return c.Nodes[0].Stats().Conns[0] }
	// A message written after n2 died and before n1 noticed would be lost
	// with its outcome "sent", as with any one-way message over TCP; wait
	// until n1 has noticed so that this test is about the queue.
	waitFor(t, 5*time.Second, "n1 sees the connection closed", func() bool { return !lane().Connected })

	for i := 100; i < 200; i++ {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, makePayload(0, uint64(i), 100)))
	}
	// A request fails at the first dial that fails, well before its
	// deadline: it was never written.
	_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, nil)
	require.ErrorIs(t, err, transport.ErrConnectionReset)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	waitFor(t, 5*time.Second, "reconnects attempted", func() bool { return lane().ConnectFailures > 0 })

	// Bring n2 back on the same address.
	cfg := c.Configs[1]
	cfg.ListenAddr = addr
	restarted, err := transport.New(cfg)
	require.NoError(t, err)
	restarted.Handle(verbData, handler)
	restarted.Start()
	c.Nodes[1] = restarted

	for i := 100; i < 200; i++ {
		select {
		case seq := <-seqs:
			require.Equal(t, uint64(i), seq)
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not delivered after restart", i)
		}
	}
	// The writer counts a batch after its write returns, which may be
	// after the receiver has handled it.
	waitFor(t, 5*time.Second, "writes counted", func() bool { return lane().MessagesSent == 200 })
	st := lane()
	assert.Equal(t, uint64(2), st.Connects)
	assert.Zero(t, st.PendingMessages)
	// The request failed unwritten: counted, on the urgent-or-small lane it used.
	total := c.Nodes[0].Stats().Total()
	assert.Equal(t, uint64(1), total.Dropped[transport.ReasonConnectionReset])
	assert.Zero(t, total.Dropped[transport.ReasonExpired])
}

func TestIdleConnectionClosesAndReopens(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Timeouts.Idle = 20 * time.Millisecond })
	var got atomic.Int64
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	}))
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("a")))
	waitFor(t, 5*time.Second, "first delivered", func() bool { return got.Load() == 1 })
	// The idle close shows on the receiver: its inbound connection ends.
	waitFor(t, 5*time.Second, "idle connection closed", func() bool { return c.Nodes[1].Stats().InboundConnections == 0 })
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("b")))
	waitFor(t, 5*time.Second, "second delivered", func() bool { return got.Load() == 2 })
	assert.Equal(t, uint64(2), c.Nodes[0].Stats().Conns[0].Connects)
}

func TestPeerLeftFailsQueuedAndWaiting(t *testing.T) {
	c := newCluster(t, 2, nil)
	errc := requestHeldByPeer(t, c)
	c.Members.Remove(c.ID(1))
	assert.ErrorIs(t, <-errc, transport.ErrPeerLeft)
	err := c.Nodes[0].Send(context.Background(), c.ID(1), verbData, nil)
	assert.ErrorIs(t, err, transport.ErrUnknownPeer)
	// The writer counts the request after its write returns, which may be
	// after the peer has taken it, and after the peer left.
	waitFor(t, 5*time.Second, "a departed peer's counts stay in Stats", func() bool {
		return c.Nodes[0].Stats().Total().MessagesSent == 1
	})
}

func TestResponsesAreCountedApart(t *testing.T) {
	c := newCluster(t, 2, nil)
	handleAll(c, verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	for _, size := range []int{10, 100 << 10} {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbEcho, make([]byte, size))
		require.NoError(t, err)
	}
	waitFor(t, 5*time.Second, "responses counted", func() bool {
		st := c.Nodes[1].Stats().Total()
		return st.MessagesSent == 2 && st.ResponsesSent == 2
	})
	assert.Zero(t, c.Nodes[0].Stats().Total().ResponsesSent)
}

// TestCloseWithWriterBlockedInWrite: the peer stops reading, the sender's
// writer blocks in a write with the socket buffers full; Close still
// returns, failing what was queued.
func TestCloseWithWriterBlockedInWrite(t *testing.T) {
	g := newGate()
	defer g.open()
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Memory.Inbound = transport.Limits{PerConnection: 256 << 10, PerPeer: 256 << 10, Node: 256 << 10}
		cfg.Memory.MaxMessageSize = 64 << 10
	})
	c.Nodes[1].Handle(verbData, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return nil, g.wait(ctx)
	}))
	payload := make([]byte, 32<<10)
	for {
		if err := c.Nodes[0].Send(context.Background(), c.ID(1), verbData, payload); err != nil {
			require.ErrorIs(t, err, transport.ErrOverloaded)
			break
		}
	}
	// The queue is full: the writer is blocked in a write to a peer that
	// does not read.
	require.NoError(t, c.Nodes[0].Close())
	st := c.Nodes[0].Stats().Total()
	assert.NotZero(t, st.Dropped[transport.ReasonClosed]+st.Dropped[transport.ReasonConnectionReset], "queued messages failed")
	assert.Zero(t, c.Nodes[0].Stats().OutboundBytes)
}

// TestLeaveInterruptsADialInProgress: a peer that accepts connections and
// never answers the handshake leaves the membership; the writer dialling it
// gives up at once, so the Leave is handled and the waiting request fails
// with ErrPeerLeft, long before the handshake timeout.
func TestLeaveInterruptsADialInProgress(t *testing.T) {
	addr, accepted := silentListener(t)
	c := newCluster(t, 1, func(i int, cfg *transport.Config) { cfg.Timeouts.Handshake = time.Minute })
	c.Members.Add(cluster.Member{ID: "mute", Addr: addr})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, time.Minute), "mute", verbEcho, []byte("x"))
		errc <- err
	}()
	<-accepted // the writer is now waiting for the handshake reply
	left := make(chan struct{})
	go func() {
		c.Members.Remove("mute")
		close(left)
	}()
	select {
	case <-left:
	case <-time.After(30 * time.Second):
		t.Fatal("handling the Leave waited for the dial in progress")
	}
	err := <-errc
	require.ErrorIs(t, err, transport.ErrPeerLeft)
	var op *transport.OpError
	require.ErrorAs(t, err, &op)
	assert.Equal(t, routing.Small, op.Lane, "the error names the request's lane")
}

// TestAddressChangeInterruptsADialToTheOldAddress: a request to n2 is
// queued and its lane dials n2's old address, where something accepts and
// never answers. n2's address then changes to where it really listens.
// The dial to the old address went on to its handshake timeout (a kick
// restarts only a dial older than 250 ms), and the request failed with
// "cannot connect"; the dial now ends, counted as no failure, and the
// lane dials the new address at once.
func TestAddressChangeInterruptsADialToTheOldAddress(t *testing.T) {
	addr, accepted := silentListener(t)
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Timeouts.Handshake = 20 * time.Second })
	c.Nodes[1].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return []byte("n2"), nil
	}))
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: addr}) // the old address
	done := make(chan error, 1)
	go func() {
		resp, err := c.Nodes[0].Request(ctxTimeout(t, time.Minute), c.ID(1), verbEcho, nil)
		if err == nil && string(resp) != "n2" {
			err = errors.New("answered by another: " + string(resp))
		}
		done <- err
	}()
	<-accepted                                                                   // the lane is dialling the old address
	c.Members.Add(cluster.Member{ID: c.ID(1), Addr: c.Nodes[1].Addr().String()}) // n2 is elsewhere
	require.NoError(t, within(t, done, 10*time.Second, "the request, after the address changed"))
	assert.Zero(t, laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small).ConnectFailures, "a dial cut short by a move is no failure")
}

// TestOnDroppedMayReadStats: a request to a peer that refuses connections
// fails when its dial does, and Config.OnDropped hears of it. The hook ran
// while the lane's queue was locked, so a hook that read Stats (which
// reads that queue) deadlocked the lane's writer, and with it every later
// Send to the peer and Close. The hook here reads Stats on a goroutine of
// its own and gives up after a while, so that the test ends either way.
func TestOnDroppedMayReadStats(t *testing.T) {
	var node *transport.Transport
	statsRead := make(chan bool, 16)
	c := newCluster(t, 1, func(i int, cfg *transport.Config) {
		cfg.OnDropped = func(transport.DroppedMessage) {
			done := make(chan struct{})
			go func() { _ = node.Stats(); close(done) }()
			select {
			case <-done:
				statsRead <- true
			case <-time.After(5 * time.Second):
				statsRead <- false
			}
		}
	})
	node = c.Nodes[0]
	c.Members.Add(cluster.Member{ID: "down", Addr: "127.0.0.1:1"})
	_, err := node.Request(ctxTimeout(t, 10*time.Second), "down", verbEcho, []byte("q"))
	require.ErrorIs(t, err, transport.ErrConnectionReset)
	assert.True(t, <-statsRead, "Stats, called from OnDropped, waited for the lock held around the hook")
}

// shuttingDown reports whether tr refuses messages because it is shutting
// down (or closed), without queuing one: a Send to no member fails with
// ErrUnknownPeer until then.
func shuttingDown(tr *transport.Transport) bool {
	return errors.Is(tr.Send(context.Background(), "nobody", verbData, nil), transport.ErrClosed)
}

// TestAResponseCutOffByCloseIsDroppedAsClosed: a handler that ends after
// its node began to close has its response dropped, counted as
// ReasonClosed like everything else Close cuts off; it was counted as
// ReasonCanceled, the reason for a caller that gave up, because the
// response went through the send path under the transport's own context,
// which Close cancels.
func TestAResponseCutOffByCloseIsDroppedAsClosed(t *testing.T) {
	const verbGet transport.Verb = 216
	c := newCluster(t, 2, nil)
	started := make(chan struct{}, 1)
	c.Nodes[1].Handle(verbGet, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done() // Close cancels it
		return []byte("too late"), nil
	}))
	failed := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 30*time.Second), c.ID(1), verbGet, nil)
		failed <- err
	}()
	within(t, started, 10*time.Second, "the handler")
	require.NoError(t, c.Nodes[1].Close())
	require.Error(t, within(t, failed, 10*time.Second, "the request's end"))
	d := c.Nodes[1].Stats().Total().Dropped
	assert.Equal(t, uint64(1), d[transport.ReasonClosed], "%v", d)
	assert.Zero(t, d[transport.ReasonCanceled], "%v", d)
}
