package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

const verbNetOneWay transport.Verb = 90

func payloadEcho(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil }

// TestInMemoryNetworkCarriesEveryKind runs two transports entirely over
// transporttest's in-memory connections, which are not *net.TCPConn and
// have no kernel socket: requests, one-way messages, large messages,
// streams, and SendFile (a buffered copy instead of sendfile and splice)
// all work, and Stats says the socket queues went unmeasured.
func TestInMemoryNetworkCarriesEveryKind(t *testing.T) {
	c := transporttest.New(t, 2, transporttest.Options{InMemory: true})
	ctx := ctxTimeout(t, 20*time.Second)
	assert.Equal(t, "mem", c.Nodes[1].Addr().Network())

	c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
	resp, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "hi", string(resp))

	large := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // 300 KiB: the large lane
	resp, err = c.Nodes[1].Request(ctx, c.ID(0), verbEcho, large)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(large, resp), "a large message crosses intact")

	const oneWay = 200
	var received atomic.Int64
	c.Nodes[1].Handle(verbNetOneWay, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		received.Add(1)
		return nil, nil
	}))
	for range oneWay {
		require.NoError(t, c.Nodes[0].Send(ctx, c.ID(1), verbNetOneWay, []byte("x")))
	}
	waitFor(t, 10*time.Second, "one-way messages delivered", func() bool { return received.Load() == oneWay })

	c.Nodes[1].HandleStream(verbEcho, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, _ = io.Copy(s, s)
	}))
	s, err := c.Nodes[0].OpenStream(ctx, c.ID(1), verbEcho)
	require.NoError(t, err)
	streamed := bytes.Repeat([]byte("stream"), 100<<10)
	go func() {
		_, _ = s.Write(streamed)
		_ = s.CloseWrite()
	}()
	back, err := io.ReadAll(s)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(streamed, back), "a stream echoes %d bytes", len(streamed))
	require.NoError(t, s.Close())

	got := receiveToFiles(t, c.Nodes[1])
	src, data := tempFile(t, 3<<20+7)
	n, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	written, err := os.ReadFile(<-got)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, written), "the file arrives byte for byte")

	for i := range c.Nodes {
		for _, cs := range c.Nodes[i].Stats().Conns {
			assert.False(t, cs.QueuesMeasured, "n%d %s %v: no socket to measure", i+1, cs.Peer, cs.Lane)
			assert.Zero(t, cs.SendQueueMax)
		}
	}
	assert.Equal(t, uint64(1), c.Nodes[1].Stats().FilesReceived)
}

// TestDialEndedAfterItsHandshakeReturnsNoConnection: a dial whose context
// ends as the handshake's Reply arrives has its socket closed by the
// cancellation. If that was after the handshake, the dial handed the
// closed connection out as dialled, with no error, and the writer learned
// otherwise only from its first write; if during it, the dial failed with
// the socket's "use of closed network connection". Either way it now
// returns the context's error.
func TestDialEndedAfterItsHandshakeReturnsNoConnection(t *testing.T) {
	var cancelOnRead atomic.Pointer[context.CancelFunc]
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Dialer = dialerFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
				nc, err := (&net.Dialer{}).DialContext(ctx, network, address)
				if err != nil {
					return nil, err
				}
				return &cancelOnFirstRead{Conn: nc, cancel: cancelOnRead.Swap(nil)}, nil
			})
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelOnRead.Store(&cancel) // the peer's Reply is the dial's first read: cancel as it arrives
	nc, err := transport.DialLane(ctx, c.Nodes[0], c.ID(1), routing.Small)
	if err == nil {
		nc.Close()
	}
	require.ErrorIs(t, err, context.Canceled, "a dial whose context ended is no connection")
}

// dialerFunc is a Config.Dialer made of a function.
type dialerFunc func(ctx context.Context, network, address string) (net.Conn, error)

func (f dialerFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}

// cancelOnFirstRead calls cancel, if set, once its first read has
// returned bytes.
type cancelOnFirstRead struct {
	net.Conn
	cancel *context.CancelFunc
	once   sync.Once
}

func (c *cancelOnFirstRead) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.cancel != nil {
		c.once.Do(*c.cancel)
	}
	return n, err
}

// countingDialer dials with a net.Dialer and counts the dials by address.
type countingDialer struct {
	net.Dialer
	mu    sync.Mutex
	dials map[string]int
}

func (d *countingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials[address]++
	d.mu.Unlock()
	return d.Dialer.DialContext(ctx, network, address)
}

func (d *countingDialer) count(address string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[address]
}

// TestCustomDialerOpensEveryConnection: Config.Dialer is used for every
// outbound connection, one per lane and kind, and only for those.
func TestCustomDialerOpensEveryConnection(t *testing.T) {
	dialer := &countingDialer{dials: make(map[string]int)}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Dialer = dialer
		}
	})
	c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
	ctx := ctxTimeout(t, 10*time.Second)
	for _, size := range []int{10, 100 << 10} { // the small lane, then the large one
		_, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, make([]byte, size))
		require.NoError(t, err)
	}
	to := c.Nodes[1].Addr().String()
	connects := c.Nodes[0].Stats().Total().Connects
	assert.Equal(t, uint64(2), connects, "small and large lane")
	assert.Equal(t, int(connects), dialer.count(to), "every connection was dialled by Config.Dialer")

	// n2 answered on connections it dialled itself, with the default dialer.
	assert.Zero(t, dialer.count(c.Nodes[0].Addr().String()))
}

// TestListenErrorIsReturnedByNew: New returns Config.Listen's error, and a
// Listen that returns nothing at all is an error too.
func TestListenErrorIsReturnedByNew(t *testing.T) {
	errNoPort := errors.New("no port for you")
	cfg := transporttest.Config("n1", "test", cluster.NewStatic())
	cfg.Listen = func(network, address string) (net.Listener, error) { return nil, errNoPort }
	_, err := transport.New(cfg)
	require.ErrorIs(t, err, errNoPort)

	cfg.Listen = func(network, address string) (net.Listener, error) { return nil, nil }
	_, err = transport.New(cfg)
	require.ErrorContains(t, err, "Config.Listen returned neither a listener nor an error")
}

// failingDialer fails every dial and records when each was made.
type failingDialer struct {
	err   error
	mu    sync.Mutex
	times []time.Time
}

func (d *failingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.times = append(d.times, time.Now())
	d.mu.Unlock()
	return nil, d.err
}

func (d *failingDialer) dialTimes() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.times...)
}

// TestDialerErrorSurfacesAndBacksOff: a Dialer's error reaches the caller
// of Request inside an *OpError naming the peer and lane, and the lane
// redials with capped exponential backoff (Reconnect), not in a loop.
// Runs in a synctest bubble over the in-memory network, so the backoff's
// waits are measured on the fake clock, exactly.
func TestDialerErrorSurfacesAndBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		network := transporttest.NewNetwork()
		defer network.Close()
		errDial := errors.New("dial refused by the test")
		dialer := &failingDialer{err: errDial}
		members := cluster.NewStatic(cluster.Member{ID: "n2", Addr: "n2:1"})
		cfg := transporttest.Config("n1", "test", members)
		network.Host("n1").Configure(&cfg)
		cfg.Dialer = dialer
		cfg.Reconnect.MinBackoff = 100 * time.Millisecond
		cfg.Reconnect.MaxBackoff = 800 * time.Millisecond
		cfg.Telemetry.DisableSocketMeasurement = true
		tr, err := transport.New(cfg)
		require.NoError(t, err)
		tr.Start()
		defer tr.Close()

		_, err = tr.Request(context.Background(), "n2", verbEcho, []byte("x"))
		require.ErrorIs(t, err, errDial, "the dialer's own error")
		var opErr *transport.OpError
		require.ErrorAs(t, err, &opErr)
		assert.Equal(t, cluster.NodeID("n2"), opErr.Peer)
		assert.Equal(t, routing.Small, opErr.Lane)

		// A one-way message waits for the peer: the lane keeps redialling.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, tr.Send(ctx, "n2", verbNetOneWay, []byte("x")))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		times := dialer.dialTimes()
		require.GreaterOrEqual(t, len(times), 8)
		// The Request's failed dial started the backoff; the Send waits it
		// out. Ceilings 100, 200, 400, 800, 800 ms..., each wait in
		// [ceiling/2, ceiling].
		ceiling := cfg.Reconnect.MinBackoff
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			assert.GreaterOrEqual(t, gap, ceiling/2, "dial %d came %v after the one before", i, gap)
			assert.LessOrEqual(t, gap, ceiling, "dial %d came %v after the one before", i, gap)
			ceiling = min(2*ceiling, cfg.Reconnect.MaxBackoff)
		}
		// 10 s of dials at least 400 ms apart once the ceiling is reached.
		assert.LessOrEqual(t, len(times), 4+10000/400)
		st := tr.Stats().Total()
		assert.Equal(t, uint64(len(times)), st.ConnectFailures)
		cancel()
	})
}

// TestUnmeasuredQueuesExportNoSeries: a lane whose connections have no
// kernel socket exports no socket-queue series (rather than a misleading
// zero), while its message counts are exported as usual; over TCP both are.
func TestUnmeasuredQueuesExportNoSeries(t *testing.T) {
	for _, inMemory := range []bool{true, false} {
		reader := metric.NewManualReader()
		c := transporttest.New(t, 2, transporttest.Options{InMemory: inMemory, Tweak: func(i int, cfg *transport.Config) {
			if i == 0 {
				cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(reader))
			}
		}})
		c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
		_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("x"))
		require.NoError(t, err)
		// The writer counts (and measures) after its write returns,
		// which may be after the response is back.
		waitFor(t, 10*time.Second, "the request counted", func() bool {
			st := c.Nodes[0].Stats().Total()
			return st.MessagesSent == 1 && st.QueuesMeasured == !inMemory
		})
		got := collect(t, reader)
		assert.Equal(t, int64(1), sumWhere(got["internode.messages.sent"], "peer", "n2", "lane", "small"), "in memory: %v", inMemory)
		peaks, ok := got["internode.socket.send_queue_peak_bytes"].(metricdata.Gauge[int64])
		points := 0
		if ok {
			for _, p := range peaks.DataPoints {
				if v, _ := p.Attributes.Value("peer"); v.AsString() == "n2" {
					points++
				}
			}
		}
		if inMemory {
			assert.Zero(t, points, "no send-queue series without a socket")
		} else {
			assert.Positive(t, points, "a TCP lane's send queue is exported")
		}
	}
}

// nothingDialer returns neither a connection nor an error.
type nothingDialer struct{}

func (nothingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return nil, nil
}

// TestDialerReturningNothingIsAnError: a Dialer that returns no conn and
// no error fails the dial with an error that names it, not a nil
// dereference.
func TestDialerReturningNothingIsAnError(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Dialer = nothingDialer{}
		}
	})
	c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
	_, err := c.Nodes[0].Request(ctxTimeout(t, 10*time.Second), c.ID(1), verbEcho, []byte("x"))
	require.ErrorContains(t, err, "Config.Dialer returned neither a connection nor an error")
	var opErr *transport.OpError
	assert.ErrorAs(t, err, &opErr)
}

// BenchmarkRequestOverNetwork compares 128-byte echo requests, 64 in
// flight, over loopback TCP and over transporttest's in-memory network,
// so that tests moved onto the in-memory network know what they gain:
//
//	go test -run XXX -bench RequestOverNetwork -count 3 ./transport
func BenchmarkRequestOverNetwork(b *testing.B) {
	for _, inMemory := range []bool{false, true} {
		name := map[bool]string{false: "loopback", true: "memory"}[inMemory]
		b.Run(name, func(b *testing.B) {
			c := transporttest.New(b, 2, transporttest.Options{InMemory: inMemory})
			c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
			payload := make([]byte, 128)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			b.SetParallelism(32) // 64 requests in flight on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Nodes[0].Request(ctx, c.ID(1), verbEcho, payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// recordingDialer dials TCP and keeps the sockets it returned.
type recordingDialer struct {
	d     net.Dialer
	mu    sync.Mutex
	conns []*net.TCPConn
}

func (r *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := r.d.DialContext(ctx, network, address)
	if err == nil {
		r.mu.Lock()
		r.conns = append(r.conns, c.(*net.TCPConn))
		r.mu.Unlock()
	}
	return c, err
}

func (r *recordingDialer) last() *net.TCPConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[len(r.conns)-1]
}

// TestOutboundSocketsTakeWriteAsUserTimeout: Timeouts.Write is the
// default TCP_USER_TIMEOUT of a lane's outbound sockets, as documented;
// they had none, the system's (about 15 minutes of retransmissions), which
// with Keepalive checks off is the only bound on a partitioned connection
// whose light traffic never blocks a write. A lane's own setting wins.
func TestOutboundSocketsTakeWriteAsUserTimeout(t *testing.T) {
	const write = 7 * time.Second
	for _, tt := range []struct {
		name string
		set  time.Duration // Lanes.Sockets[Small].UserTimeout
		want time.Duration
	}{{"default", 0, write}, {"the lane's own", 3 * time.Second, 3 * time.Second}, {"none", -1, 0}} {
		t.Run(tt.name, func(t *testing.T) {
			dialer := &recordingDialer{}
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Timeouts.Write = write
				cfg.Lanes.Sockets[routing.Small].UserTimeout = tt.set
				if i == 0 {
					cfg.Dialer = dialer
				}
			})
			require.NoError(t, c.Nodes[0].Send(ctxTimeout(t, 5*time.Second), c.ID(1), verbData, []byte("x")))
			require.NoError(t, c.WaitConnected(ctxTimeout(t, 5*time.Second), 0, 1))
			got, err := sockstat.UserTimeout(dialer.last())
			if errors.Is(err, sockstat.ErrUnsupported) {
				t.Skip(err)
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
