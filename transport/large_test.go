package transport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

const (
	verbLarge  transport.Verb = 40
	verbStream transport.Verb = 41
	verbSmall  transport.Verb = 42
)

// bigLimits lets messages of up to max bytes through.
func bigLimits(max int) func(int, *transport.Config) {
	return func(i int, cfg *transport.Config) {
		cfg.Memory.MaxMessageSize = max
		cfg.Memory.Outbound = transport.Limits{PerConnection: 4 << 20, PerPeer: int64(2 * max), Node: int64(4 * max)}
		cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: int64(2 * max), Node: int64(4 * max)}
	}
}

func TestConcurrentLargeMessagesArriveIntact(t *testing.T) {
	c := newCluster(t, 2, bigLimits(32<<20))
	var mu sync.Mutex
	sums := map[[32]byte]int{}
	done := make(chan struct{}, 64)
	c.Nodes[1].Handle(verbLarge, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		mu.Lock()
		sums[sha256.Sum256(m.Payload)]++
		mu.Unlock()
		done <- struct{}{}
		return nil, nil
	}))
	sizes := []int{65<<10 + 1, 100 << 10, 1 << 20, 3<<20 + 7, 16 << 20, 300 << 10, 8 << 20, 70 << 10}
	want := map[[32]byte]int{}
	var wg sync.WaitGroup
	for i, size := range sizes {
		p := makePayload(0, uint64(i), size)
		want[sha256.Sum256(p)]++
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbLarge, p))
		}()
	}
	wg.Wait()
	for range sizes {
		<-done
	}
	assert.Equal(t, want, sums)
}

func TestSmallLargeMessageOvertakesHugeOne(t *testing.T) {
	c := newCluster(t, 2, bigLimits(64<<20))
	order := make(chan int, 2)
	c.Nodes[1].Handle(verbLarge, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		order <- len(m.Payload)
		return nil, nil
	}))
	huge, small := make([]byte, 64<<20), make([]byte, 1<<20)
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbLarge, huge))
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbLarge, small))
	assert.Equal(t, len(small), <-order, "parts are interleaved: the 1 MiB message does not wait for the 64 MiB one")
	assert.Equal(t, len(huge), <-order)
}

func TestLargeMessageDoesNotDelaySmallOnes(t *testing.T) {
	c := newCluster(t, 2, bigLimits(64<<20))
	smallDone := make(chan struct{})
	var got sync.WaitGroup
	got.Add(100)
	c.Nodes[1].Handle(verbSmall, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		got.Done()
		return nil, nil
	}))
	largeDone := make(chan error, 1)
	c.Nodes[1].HandleReader(verbStream, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
		// Hold the large message mid-transfer until every small message
		// sent after it has arrived: if they queued behind it, this
		// would never return.
		if _, err := io.CopyN(io.Discard, body, 1); err != nil {
			largeDone <- err
			return nil, err
		}
		select {
		case <-smallDone:
		case <-ctx.Done():
		}
		_, err := io.Copy(io.Discard, body)
		largeDone <- err
		return nil, err
	}))
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbStream, make([]byte, 48<<20)))
	for i := range 100 {
		require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbSmall, []byte{byte(i)}))
	}
	got.Wait()
	close(smallDone)
	require.NoError(t, <-largeDone)
}

// TestStreamingHandlerHeapStaysSmall: a 256 MiB message read through a
// ReaderHandler never has much of itself in the receiver's memory.
func TestStreamingHandlerHeapStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 256 MiB")
	}
	const size = 256 << 20
	c := newCluster(t, 2, bigLimits(size))
	payload := makePayload(0, 7, size)
	wantSum := sha256.Sum256(payload)

	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	var peak uint64
	result := make(chan [32]byte, 1)
	c.Nodes[1].HandleReader(verbStream, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
		h := sha256.New()
		buf := make([]byte, 1<<20)
		var ms runtime.MemStats
		for read := 0; ; {
			n, err := body.Read(buf)
			h.Write(buf[:n])
			read += n
			if read%(32<<20) < n { // every 32 MiB: the live heap
				runtime.GC()
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		result <- sum
		return nil, nil
	}))
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbStream, payload))
	select {
	case sum := <-result:
		assert.Equal(t, wantSum, sum, "the streamed payload arrived intact")
	case <-time.After(2 * time.Minute):
		t.Fatal("the streamed message did not arrive")
	}
	grew := int64(peak) - int64(base.HeapAlloc)
	t.Logf("heap grew by %d MiB while receiving %d MiB", grew>>20, size>>20)
	assert.Less(t, grew, int64(size/4), "the receiver's heap stays far below the message size")
}

func TestReaderHandlerSmallMessagesAndRequests(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].HandleReader(verbStream, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
		b, err := io.ReadAll(body)
		return append([]byte("got:"), b...), err
	}))
	for _, size := range []int{10, 200 << 10} {
		p := makePayload(0, 1, size)
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbStream, p)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(append([]byte("got:"), p...), resp), "size %d", size)
	}
}

// TestLargeEchoOfLentPayload: a handler that answers with the payload it
// was lent (an echo) gets it written intact, though received large
// payloads are otherwise recycled as soon as their handler returns.
func TestLargeEchoOfLentPayload(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].Handle(verbLarge, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		return m.Payload, nil
	}))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				p := makePayload(uint32(g), uint64(i*4+g), 1<<20)
				resp, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbLarge, p)
				if !assert.NoError(t, err) {
					return
				}
				assert.True(t, bytes.Equal(p, resp), "echo %d/%d intact", g, i)
			}
		}()
	}
	wg.Wait()
}

// cutBeforeFirstPart dials with a net.Dialer and makes the first write of
// a large message part's frame header, on any connection, fail: the
// connection is closed instead, after the receiver granted the message
// and before a byte of its payload left. Later writes pass.
type cutBeforeFirstPart struct {
	net.Dialer
	cut atomic.Bool
}

func (d *cutBeforeFirstPart) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := d.Dialer.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &cuttingConn{Conn: conn, d: d}, nil
}

var errCut = errors.New("test: connection cut before the first part")

type cuttingConn struct {
	net.Conn
	d *cutBeforeFirstPart
}

func (c *cuttingConn) Write(b []byte) (int, error) {
	if len(b) == wire.FrameHeaderSize {
		if h, err := wire.ParseFrameHeader(b, 1<<30); err == nil && h.Kind == wire.FrameLargeMore && c.d.cut.CompareAndSwap(false, true) {
			c.Conn.Close()
			return 0, errCut
		}
	}
	return c.Conn.Write(b)
}

// TestStreamedMessageCutBeforeItsFirstPartIsHandledOnce: a large message
// whose connection ends after its grant and before any of its payload was
// written is sent again on the next connection, and its ReaderHandler runs
// once, reading all of it. It ran twice when the handler started at the
// grant, the first time reading ErrConnectionReset.
func TestStreamedMessageCutBeforeItsFirstPartIsHandledOnce(t *testing.T) {
	dialer := &cutBeforeFirstPart{}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Dialer = dialer
		}
	})
	type call struct {
		n   int64
		err error
	}
	calls := make(chan call, 4)
	c.Nodes[1].HandleReader(verbStream, transport.ReaderHandlerFunc(func(_ context.Context, _ *transport.Message, body io.Reader) ([]byte, error) {
		n, err := io.Copy(io.Discard, body)
		calls <- call{n, err}
		return nil, err
	}))
	const size = 1 << 20
	require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbStream, make([]byte, size)))
	var first call
	select {
	case first = <-calls:
	case <-time.After(10 * time.Second):
		t.Fatalf("the message never reached its handler; sender %+v", c.Nodes[0].Stats().Total())
	}
	require.NoError(t, first.err)
	assert.EqualValues(t, size, first.n)
	require.True(t, dialer.cut.Load(), "the connection was cut before the first part")
	waitFor(t, 5*time.Second, "both ends' accounts", func() bool {
		return c.Nodes[1].Stats().Total().MessagesReceived == 1 && c.Nodes[0].Stats().Total().MessagesSent == 1
	})
	select {
	case again := <-calls:
		t.Fatalf("the handler ran a second time: %d bytes, %v", again.n, again.err)
	default:
	}
	in, out := c.Nodes[1].Stats().Total(), c.Nodes[0].Stats().Total()
	for r, n := range in.DroppedInbound {
		assert.Zero(t, n, "dropped on arrival: %v", transport.Reason(r))
	}
	assert.Zero(t, out.DroppedTotal(), "dropped by the sender")
	for _, cs := range c.Nodes[0].Stats().Conns {
		if cs.Lane == routing.Large {
			assert.EqualValues(t, 2, cs.Connects, "the large lane connected again")
		}
	}
}

// TestCancelReachesAStreamedRequest: a Request whose caller gives up sends
// a cancel, and the handler's context is then cancelled, a ReaderHandler's
// as a Handler's. A large request streamed to a ReaderHandler was never
// registered for its cancel: its handler ran on.
func TestCancelReachesAStreamedRequest(t *testing.T) {
	for _, streamed := range []bool{false, true} {
		t.Run(map[bool]string{false: "Handler", true: "ReaderHandler"}[streamed], func(t *testing.T) {
			c := newCluster(t, 2, nil)
			started := make(chan struct{}, 1)
			cancelled := make(chan bool, 1)
			wait := func(ctx context.Context) {
				started <- struct{}{}
				select {
				case <-ctx.Done():
					cancelled <- true
				case <-time.After(5 * time.Second):
					cancelled <- false
				}
			}
			if streamed {
				c.Nodes[1].HandleReader(verbStream, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
					_, _ = io.Copy(io.Discard, body)
					wait(ctx)
					return nil, nil
				}))
			} else {
				c.Nodes[1].Handle(verbStream, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
					wait(ctx)
					return nil, nil
				}))
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := c.Nodes[0].Request(ctx, c.ID(1), verbStream, make([]byte, 200<<10))
				errc <- err
			}()
			<-started
			cancel()
			require.ErrorIs(t, <-errc, context.Canceled)
			assert.True(t, <-cancelled, "the handler's context is cancelled by its requester's cancel")
		})
	}
}

// TestCancelledLargeRequestIsWithdrawn: a large request whose caller gave
// up is withdrawn at once, whether its receiver had no room for it yet or
// its parts were under way: it ends counted as cancelled, gives back the
// capacity it held on both sides, and the rest of it is never written.
// It was written in full all the same — after the receiver made room, for
// one that waited — and held its capacity and a place among the
// connection's begun messages until then.
func TestCancelledLargeRequestIsWithdrawn(t *testing.T) {
	large := func(c *transporttest.Cluster) transport.ConnStats {
		return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Large)
	}
	t.Run("waiting for room", func(t *testing.T) {
		// The receiver has room for one 3 MiB message at a time.
		c := newCluster(t, 2, func(i int, cfg *transport.Config) {
			if i == 1 {
				cfg.Memory.MaxMessageSize = 4 << 20
				cfg.Memory.Inbound = transport.Limits{PerConnection: 4 << 20, PerPeer: 4 << 20, Node: 4 << 20}
			}
		})
		release := make(chan struct{})
		var releaseOnce sync.Once
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
		started := make(chan struct{}, 4)
		var handled atomic.Int32
		c.Nodes[1].Handle(verbLarge, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
			handled.Add(1)
			started <- struct{}{}
			<-release
			return nil, nil
		}))
		first := make(chan error, 1)
		go func() {
			_, err := c.Nodes[0].Request(ctxTimeout(t, 20*time.Second), c.ID(1), verbLarge, make([]byte, 3<<20))
			first <- err
		}()
		within(t, started, 10*time.Second, "the first request's handler")

		ctx, cancel := context.WithCancel(context.Background())
		second := make(chan error, 1)
		go func() {
			_, err := c.Nodes[0].Request(ctx, c.ID(1), verbLarge, make([]byte, 3<<20))
			second <- err
		}()
		waitFor(t, 10*time.Second, "the second request queued", func() bool { return large(c).PendingBytes >= 3<<20 })
		cancel()
		require.ErrorIs(t, within(t, second, 10*time.Second, "the cancelled request"), context.Canceled)
		waitFor(t, 10*time.Second, "the cancelled request withdrawn while the first holds the room", func() bool {
			st := large(c)
			return st.Dropped[transport.ReasonCanceled] == 1 && st.PendingBytes == 0
		})

		releaseOnce.Do(func() { close(release) })
		require.NoError(t, within(t, first, 10*time.Second, "the first request"))
		_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbLarge, make([]byte, 3<<20))
		require.NoError(t, err, "the lane and the receiver's room are free again")
		assert.Equal(t, int32(2), handled.Load(), "the withdrawn request's handler never ran")
		// The writer counts a write once it returns, perhaps after the
		// response came back.
		waitFor(t, 5*time.Second, "two messages sent, not three", func() bool { return large(c).MessagesSent == 2 })
	})
	t.Run("under way", func(t *testing.T) {
		c := newCluster(t, 2, nil)
		reading := make(chan struct{})
		rest := make(chan error, 1)
		c.Nodes[1].HandleReader(verbStream, transport.ReaderHandlerFunc(func(ctx context.Context, m *transport.Message, body io.Reader) ([]byte, error) {
			_, err := io.CopyN(io.Discard, body, 64<<10)
			close(reading)
			<-ctx.Done() // the requester's cancel
			if err == nil {
				_, err = io.Copy(io.Discard, body)
			}
			rest <- err
			return nil, ctx.Err()
		}))
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := c.Nodes[0].Request(ctx, c.ID(1), verbStream, make([]byte, 32<<20))
			errc <- err
		}()
		within(t, reading, 10*time.Second, "the handler reading")
		cancel()
		require.ErrorIs(t, within(t, errc, 10*time.Second, "the cancelled request"), context.Canceled)
		waitFor(t, 10*time.Second, "the request's outcome", func() bool {
			st := large(c)
			return st.Dropped[transport.ReasonCanceled]+st.MessagesSent == 1 && st.PendingBytes == 0
		})
		st := large(c)
		assert.Equal(t, uint64(1), st.Dropped[transport.ReasonCanceled], "withdrawn")
		assert.Zero(t, st.MessagesSent, "not written in full")
		assert.ErrorIs(t, within(t, rest, 10*time.Second, "the handler's read of the rest"), context.Canceled,
			"the handler reads that the sender withdrew the message")
	})
}

// TestWithdrawalsDoNotSilenceTheLargeLane: while the receiver has no room
// (the lane's eight begun messages wait for grants, more wait behind
// them), callers that give up make the writer run rounds that write
// nothing; each counted as a write and put off the ping the lane owes its
// peer every keepalive interval. Callers giving up more often than once a
// second kept the lane silent, and the receiver cut it after its
// Keepalive: the request written on it, its handler running, failed.
func TestWithdrawalsDoNotSilenceTheLargeLane(t *testing.T) {
	const size = 1 << 20
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Timeouts.Keepalive = 2 * time.Second
			cfg.Memory.MaxMessageSize = size + size/4
			cfg.Memory.Inbound = transport.Limits{PerConnection: size + size/2, PerPeer: size + size/2, Node: size + size/2}
		}
	})
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	started := make(chan struct{}, 1)
	c.Nodes[1].Handle(verbLarge, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return []byte("done"), nil
	}))
	large := func() transport.ConnStats { return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Large) }
	first := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].Request(ctxTimeout(t, time.Minute), c.ID(1), verbLarge, make([]byte, size))
		first <- err
	}()
	within(t, started, 10*time.Second, "the first request's handler, holding the receiver's room")

	const more = 20 // eight begin and wait for a grant; twelve wait behind them
	cancels := make([]context.CancelFunc, more)
	for i := range more {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cancels[i] = cancel
		t.Cleanup(cancel)
		go func() { _, _ = c.Nodes[0].Request(ctx, c.ID(1), verbLarge, make([]byte, size)) }()
		waitFor(t, 10*time.Second, "the request queued", func() bool { return large().PendingBytes >= uint64(i+1)*size })
	}
	connects := large().Connects
	// The last ten give up, one every 400 ms: 4 s, twice n2's Keepalive.
	pace := time.NewTicker(400 * time.Millisecond)
	defer pace.Stop()
	for i := more - 1; i >= more-10; i-- {
		<-pace.C
		dropped := large().Dropped[transport.ReasonCanceled]
		cancels[i]()
		waitFor(t, 5*time.Second, "the withdrawal", func() bool { return large().Dropped[transport.ReasonCanceled] == dropped+1 })
	}
	assert.Equal(t, connects, large().Connects, "the connection was not cut while its peer lived")
	releaseAll()
	require.NoError(t, within(t, first, 10*time.Second, "the first request"), "written in full, its handler running")
}

// TestLargeMessageExpiresOnTimeWaitingForItsGrant: a large message whose
// receiver has no room for it waits, begun, for its grant; when its
// deadline passes meanwhile it is withdrawn and counted expired, on both
// sides, and gives back its capacity, at its deadline. The writer looked
// only every keepalive interval (1 s), so a message with a 50 ms TTL
// ended up to a second late, holding its capacity and one of the
// connection's begun slots all that while.
func TestLargeMessageExpiresOnTimeWaitingForItsGrant(t *testing.T) {
	const size = 1 << 20
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 { // room for one message at a time
			cfg.Memory.MaxMessageSize = size + size/4
			cfg.Memory.Inbound = transport.Limits{PerConnection: size + size/2, PerPeer: size + size/2, Node: size + size/2}
		}
	})
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	started := make(chan struct{}, 1)
	c.Nodes[1].Handle(verbLarge, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		started <- struct{}{}
		<-release
		return nil, nil
	}))
	large := func() transport.ConnStats { return laneStats(t, c.Nodes[0], string(c.ID(1)), routing.Large) }
	inbound := func() transport.ConnStats { return laneStats(t, c.Nodes[1], string(c.ID(0)), routing.Large) }

	require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, 20*time.Second), c.ID(1), verbLarge, make([]byte, size)))
	within(t, started, 10*time.Second, "the first message's handler, holding the receiver's room")
	waitFor(t, 10*time.Second, "the first message written", func() bool { return large().MessagesSent == 1 })

	const ttl = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), ttl)
	defer cancel()
	require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbLarge, make([]byte, size)))
	// Well before the keepalive interval, though generous for a loaded
	// machine: the writer wakes at the deadline.
	waitFor(t, 400*time.Millisecond, "the message expired at its deadline", func() bool {
		return large().Dropped[transport.ReasonExpired] == 1 && large().PendingBytes == 0
	})
	waitFor(t, 400*time.Millisecond, "the receiver told", func() bool {
		return inbound().DroppedInbound[transport.ReasonExpired] == 1
	})
}
