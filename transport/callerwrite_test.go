package transport_test

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// neverWaits makes every lane's coalescing Disabled, so that whether a
// message's producer writes it depends on the lane alone.
func neverWaits(cfg *transport.Config) {
	cfg.Lanes.Coalescing = func(routing.Lane) coalescing.Strategy { return coalescing.NewDisabled() }
}

// quietAtOnce lets every node's producers write their own messages as soon
// as the lane's writer waits idle, rather than after CallerWriteIdle, so
// that the tests need not wait for lanes to go quiet.
func quietAtOnce(c *transporttest.Cluster) {
	for _, n := range c.Nodes {
		transport.SetCallerWriteIdle(n, 0)
	}
}

// TestCallerWritesToAnIdleLane: one request at a time, and one one-way
// message at a time, each to a lane whose writer waits idle. The caller
// writes its own message and the handler its own response, with no
// hand-off to a writer goroutine; each arrives whole.
func TestCallerWritesToAnIdleLane(t *testing.T) {
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) { neverWaits(cfg) })
	defer c.Close()
	quietAtOnce(c)
	handleAll(c, verbEcho, func(_ context.Context, m *transport.Message) ([]byte, error) {
		return bytes.Clone(m.Payload), nil
	})
	var got atomic.Int64
	handleAll(c, verbData, func(_ context.Context, m *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	})
	ctx := ctxTimeout(t, 10*time.Second)
	_, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte("dial")) // the writer dials and writes this one
	require.NoError(t, err)
	const n = 200
	for i := range n {
		p := bytes.Repeat([]byte{byte(i)}, 100+i)
		resp, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, p)
		require.NoError(t, err)
		require.Equal(t, p, resp)
	}
	for i := range n {
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, []byte{byte(i)}))
		waitFor(t, 5*time.Second, "the one-way message handled", func() bool { return got.Load() == int64(i+1) })
	}
	out := laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small)
	back := laneStats(t, c.Nodes[1], string(c.ID(0)), routing.Small)
	t.Logf("requester: %d of %d writes by callers; responder: %d of %d", out.CallerWrites, out.Writes, back.CallerWrites, back.Writes)
	// Most, not all: a message that comes while the writer goroutine is
	// still on its way to its idle wait is left to it. On a loaded
	// machine that is more often so for responses (87 of 201 were
	// written by their handlers in one run of the whole race suite, 110
	// to 196 in ten runs of this test alone); without the handlers'
	// writes none would be.
	assert.Greater(t, out.CallerWrites, uint64(n), "requests and one-way messages written by their callers")
	assert.LessOrEqual(t, back.CallerWrites, back.Writes)
	assert.Greater(t, back.CallerWrites, uint64(n/4), "responses written by their handlers")
	assert.LessOrEqual(t, out.CallerWrites, out.Writes)
	assert.Equal(t, uint64(2*n+1), out.MessagesSent)
	assert.Zero(t, out.DroppedTotal())
}

// TestCallersNeverWaitOnAPeerThatStopsReading: a peer beats on the back
// channel (it is alive) but never reads. Senders write their own messages
// while the lane's writer waits idle; once the socket's send queue builds
// up they only queue, and the writer goroutine is the one that waits in a
// write. So no Send waits for the write timeout, here a minute.
func TestCallersNeverWaitOnAPeerThatStopsReading(t *testing.T) {
	c := laneToDeafSink(t, func(cfg *transport.Config) {
		neverWaits(cfg)
		// Socket buffers far smaller than the lane's limit: once Send is
		// refused, most of what it holds waits in the queue.
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 64 << 10
		cfg.Memory.Outbound = transport.Limits{PerConnection: 1 << 20, PerPeer: 64 << 20, Node: 64 << 20}
	})
	defer c.Close()
	sent := make(chan int)
	go func() {
		n := 0
		for ; n < 16<<10; n++ { // 64 MB: more than the socket buffers and the limits take
			if err := c.Nodes[0].Send(context.Background(), "sink", verbData, make([]byte, 4000)); err != nil {
				assert.ErrorIs(t, err, transport.ErrOverloaded)
				break
			}
		}
		sent <- n
	}()
	select {
	case n := <-sent:
		st := laneStats(t, c.Nodes[0], "sink", routing.Small)
		t.Logf("%d sent before the limit; %d written, %d by callers", n, st.MessagesSent, st.CallerWrites)
		assert.Positive(t, st.CallerWrites, "callers wrote while the socket took their messages")
		assert.Greater(t, st.PendingMessages, uint64(0), "the rest waits in the queue, not in a caller")
	case <-time.After(30 * time.Second):
		t.Fatal("a Send waited on the peer that stopped reading")
	}
}

// TestHandlersNeverWaitOnARequesterThatStopsReading: a requester sends one
// request at a time and never reads the answers. The handler's goroutine
// writes each answer itself while the socket takes them, and only queues
// them once its send queue builds up or a beat is stuck in the full
// socket; so the verb's one worker (Concurrent(1)) goes on handling
// requests, rather than waiting in a write for the write timeout. An
// Inline handler runs on the connection's reader, which writes the
// answers by the same rule, and so goes on reading.
func TestHandlersNeverWaitOnARequesterThatStopsReading(t *testing.T) {
	for name, runs := range map[string]transport.HandleOption{"Concurrent": transport.Concurrent(1), "Inline": transport.Inline()} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
				neverWaits(cfg)
				cfg.Security.AcceptUnknownPeers = true
				cfg.Timeouts.Write = time.Minute
				// The node's beats, stuck in the full socket, would cut
				// the requester off after this; not within the test.
				cfg.Timeouts.Keepalive = time.Minute
			})
			defer c.Close()
			quietAtOnce(c)
			const n = 3000 // 9 MiB of answers: far more than the socket buffers take
			handled := make(chan struct{}, n)
			answer := make([]byte, 3<<10)
			c.Nodes[0].Handle(verbEcho, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) {
				handled <- struct{}{}
				return answer, nil
			}), runs)
			conn := dialAs(c.Nodes[0].Addr().String(), "deaf", routing.Small)
			require.NotNil(t, conn)
			defer conn.Close()
			for i := range n {
				_, err := conn.Write(requestFrame(uint64(i+1), verbEcho, []byte("hi")))
				require.NoError(t, err)
				select {
				case <-handled:
				case <-time.After(10 * time.Second):
					t.Fatalf("request %d not handled: the handler waits", i)
				}
			}
			st := laneStats(t, c.Nodes[0], string(transport.StrangersPeer), routing.Small)
			t.Logf("%d handled; %d answers written, %d by their handlers", n, st.MessagesSent, st.CallerWrites)
			assert.Positive(t, st.CallerWrites, "handlers wrote while the socket took their answers")
			assert.Less(t, st.MessagesSent, uint64(n), "the rest wait for the socket, not in a handler")
		})
	}
}

// gatedWait is a coalescing strategy that never waits, but once armed
// holds the next Wait asked by a producer writing its own message
// (writeFromCaller) until the round's gate is closed, telling held as it
// begins to: it widens the moment between that producer's look at the
// queue and its write.
type gatedWait struct {
	coalescing.Strategy
	callerGate
}

func (s *gatedWait) Wait(now time.Time, messages, bytes int) time.Duration {
	if fromCallerWrite() {
		if held, gate := s.take(); held != nil {
			close(held)
			<-gate
		}
	}
	return s.Strategy.Wait(now, messages, bytes)
}

// gatedSmallLane makes n's small lanes' strategy gated.
func gatedSmallLane(gated *gatedWait) func(cfg *transport.Config) {
	return func(cfg *transport.Config) {
		cfg.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
			if lane == routing.Small {
				return gated
			}
			return coalescing.NewDisabled()
		}
	}
}

// holdCallerWrite sends messages to peer to from a goroutine of its own,
// each with ctx made by newCtx, until one is written by its producer
// (held, once gated is armed), and returns when that producer is held,
// with the channel its Send's error comes on.
func holdCallerWrite(t *testing.T, n *transport.Transport, to cluster.NodeID, held <-chan struct{},
	newCtx func() context.Context) <-chan error {
	t.Helper()
	sent := make(chan error, 1)
	go func() {
		// Until this one is the producer that writes its own, the writer
		// goroutine writes them.
		for {
			if err := n.Send(newCtx(), to, verbData, []byte("small")); err != nil {
				sent <- err
				return
			}
			select {
			case <-held:
				sent <- nil
				return
			default:
			}
		}
	}()
	select {
	case <-held:
	case err := <-sent:
		t.Fatalf("no producer wrote its own message: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no producer wrote its own message")
	}
	return sent
}

// fromCallerWrite reports whether a producer writing its own message
// (writeFromCaller) is the caller.
func fromCallerWrite() bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, ".(*outConn).writeFromCaller") {
			return true
		}
		if !more {
			return false
		}
	}
}

// TestCallerWritesNoMoreThanItLookedAt: a producer writing its own message
// to an idle lane checked that the queue was small, then took the queue's
// segment whole, with what other producers had queued in the meantime:
// here 480 KiB, which it wrote itself into the socket of a peer that
// stopped reading, and waited there for the write timeout. It writes only
// a queue within the bound, or leaves it to the writer goroutine.
func TestCallerWritesNoMoreThanItLookedAt(t *testing.T) {
	gated := &gatedWait{Strategy: coalescing.NewDisabled()}
	c := laneToDeafSink(t, func(cfg *transport.Config) {
		gatedSmallLane(gated)(cfg)
		cfg.Lanes.Sockets[routing.Small].SendBuffer = 16 << 10
		cfg.Memory.Outbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 64 << 20, Node: 64 << 20}
	})
	defer c.Close()
	held, gate := gated.arm()
	sent := holdCallerWrite(t, c.Nodes[0], "sink", held, context.Background)
	for range 8 { // queued behind the held producer's message, in its segment
		require.NoError(t, c.Nodes[0].Send(context.Background(), "sink", verbData, make([]byte, 60<<10)))
	}
	close(gate)
	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("a producer waits in a write to a peer that stopped reading")
	}
}

// TestCallerWriteOfNothingDoesNotPutOffThePing: a producer writing its own
// message found it expired, wrote nothing, and yet counted the lane as
// written to, so the writer put off its ping; producers doing so every
// few hundred milliseconds kept the lane silent, and its peer closed the
// connection as dead after Timeouts.Keepalive. Only a write that wrote
// puts off the ping.
func TestCallerWriteOfNothingDoesNotPutOffThePing(t *testing.T) {
	gated := &gatedWait{Strategy: coalescing.NewDisabled()}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		neverWaits(cfg)
		if i == 0 {
			gatedSmallLane(gated)(cfg)
		}
		cfg.Timeouts.Keepalive = 2 * time.Second
	})
	defer c.Close()
	quietAtOnce(c)
	handleAll(c, verbData, func(context.Context, *transport.Message) ([]byte, error) { return nil, nil })
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbData, []byte("dial")))
	waitFor(t, 5*time.Second, "the first message written", func() bool {
		return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small).MessagesSent == 1
	})
	// Twice the peer's keepalive timeout of producers whose messages
	// expire while they write them.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); {
		held, gate := gated.arm()
		var last context.Context
		sent := holdCallerWrite(t, c.Nodes[0], c.ID(1), held, func() context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			t.Cleanup(cancel)
			last = ctx
			return ctx
		})
		<-last.Done() // the held message expires
		close(gate)
		require.NoError(t, within(t, sent, 10*time.Second, "the held producer's Send"))
	}
	st := laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small)
	assert.True(t, st.Connected, "the lane's connection closed")
	assert.EqualValues(t, 1, st.Connects, "the lane's connection replaced")
	assert.Positive(t, st.Dropped[transport.ReasonExpired], "messages expired as they were written")
}

// laneToDeafSink is one node, configured by configure and a minute's
// write timeout, whose small lane to "sink", a peer that never reads, is
// dialled and quiet: the writer dialled for a first message, and the lane
// writes from its producers at once (quietAtOnce).
func laneToDeafSink(t *testing.T, configure func(cfg *transport.Config)) *transporttest.Cluster {
	t.Helper()
	sink := deafPeer(t)
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Timeouts.Write = time.Minute
		configure(cfg)
	})
	quietAtOnce(c)
	c.Members.Add(cluster.Member{ID: "sink", Addr: sink})
	require.NoError(t, c.Nodes[0].Send(context.Background(), "sink", verbData, []byte("dial")))
	waitFor(t, 5*time.Second, "the first message written", func() bool {
		return laneStats(t, c.Nodes[0], "sink", routing.Small).MessagesSent == 1
	})
	return c
}

// TestCallerWritesWhatCameDuringItsWrite: a producer writing its own
// message to an idle lane writes, before it lets the writer's role go,
// the message another producer queued while its write was under way. That
// one was left to the writer goroutine, which the other producer had to
// wake and which then waited for the role: a second thread's wake-up on
// the message's way, for the second request of a burst.
func TestCallerWritesWhatCameDuringItsWrite(t *testing.T) {
	var gate callerGate
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		neverWaits(cfg)
		if i == 0 {
			cfg.Dialer = dialerFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
				nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
				if err != nil {
					return nil, err
				}
				return &heldWriteConn{Conn: nc, gate: &gate}, nil
			})
		}
	})
	defer c.Close()
	quietAtOnce(c)
	var got atomic.Int64
	handleAll(c, verbData, func(context.Context, *transport.Message) ([]byte, error) {
		got.Add(1)
		return nil, nil
	})
	ctx := ctxTimeout(t, 10*time.Second)
	require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, []byte("dial")))
	waitFor(t, 5*time.Second, "the first message handled", func() bool { return got.Load() == 1 })

	held, release := gate.arm()
	sent := make(chan error, 1)
	go func() {
		// Until one is written by its producer (the lane's writer may not
		// be waiting idle yet), the writer goroutine writes them.
		for {
			err := c.Nodes[0].Send(ctx, c.ID(1), verbData, []byte("first"))
			select {
			case <-held:
				sent <- err
				return
			default:
				if err != nil {
					sent <- err
					return
				}
			}
		}
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no producer wrote its own message")
	}
	before := laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small)
	require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbData, []byte("second"))) // queued while the write is held
	close(release)
	require.NoError(t, within(t, sent, 10*time.Second, "the held producer's Send"))
	want := before.MessagesSent + 2 // the held one's and the second
	waitFor(t, 5*time.Second, "both written", func() bool {
		return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small).MessagesSent >= want
	})
	after := laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Small)
	assert.Equal(t, want, after.MessagesSent)
	assert.Equal(t, before.CallerWrites+2, after.CallerWrites,
		"the held producer wrote its own message, then the one queued during that write")
	assert.Zero(t, after.DroppedTotal())
}

// callerGate holds, once armed, the next producer writing its own message
// (writeFromCaller) at a point of the test's choosing: the holder closes
// held as it stops, and waits until gate is closed.
type callerGate struct {
	mu         sync.Mutex
	held, gate chan struct{} // the armed round's; nil: none
}

// arm holds the next producer's write.
func (g *callerGate) arm() (held, gate chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held, g.gate = make(chan struct{}), make(chan struct{})
	return g.held, g.gate
}

// take disarms the gate and returns the armed round's channels, nil if
// none was armed.
func (g *callerGate) take() (held, gate chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	held, gate = g.held, g.gate
	g.held, g.gate = nil, nil
	return held, gate
}

// heldWriteConn is a socket whose writes gate may hold.
type heldWriteConn struct {
	net.Conn
	gate *callerGate
}

// SyscallConn lets the transport ask the socket's send queue, as a
// producer's write needs.
func (c *heldWriteConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

func (c *heldWriteConn) Write(b []byte) (int, error) {
	if fromCallerWrite() {
		if held, gate := c.gate.take(); held != nil {
			n, err := c.Conn.Write(b)
			close(held)
			<-gate
			return n, err
		}
	}
	return c.Conn.Write(b)
}
