package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/internode/internode/transport"
)

// pipeNetwork connects dialers to listeners with net.Pipe: unbuffered
// and synchronous, every Write waits for the peer's Read. A transport
// must not rely on a socket buffer to make progress.
type pipeNetwork struct {
	mu        sync.Mutex
	listeners map[string]*pipeListener
}

type pipeListener struct {
	addr   pipeAddr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *pipeListener) Addr() net.Addr { return l.addr }

func (n *pipeNetwork) listen(_, address string) (net.Listener, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := &pipeListener{addr: pipeAddr(address), conns: make(chan net.Conn), closed: make(chan struct{})}
	n.listeners[address] = l
	return l, nil
}

func (n *pipeNetwork) DialContext(ctx context.Context, _, address string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listeners[address]
	n.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: net.ErrClosed}
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: net.ErrClosed}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestTransportOverNetPipe: over net.Pipe's unbuffered, synchronous
// connections, requests both ways at once, bursts of one-way messages,
// large messages and streams all complete: no exchange waits on a write
// that only a socket buffer would have let through.
func TestTransportOverNetPipe(t *testing.T) {
	pipes := &pipeNetwork{listeners: make(map[string]*pipeListener)}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.ListenAddr = []string{"a", "b"}[i]
		cfg.Dialer = pipes
		cfg.Listen = pipes.listen
	})
	c.HandleAll(verbEcho, transport.HandlerFunc(payloadEcho))
	var received atomic.Int64
	c.HandleAll(verbNetOneWay, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		received.Add(1)
		return nil, nil
	}))
	echoStreams(c)
	ctx := ctxTimeout(t, 30*time.Second)
	large := bytes.Repeat([]byte("L"), 1<<20)
	var wg sync.WaitGroup
	const oneWay = 500
	for i := range 2 {
		wg.Go(func() {
			for range oneWay {
				assert.NoError(t, c.Nodes[i].Send(ctx, c.ID(1-i), verbNetOneWay, []byte("one way")))
			}
		})
		for range 4 {
			wg.Go(func() {
				for size := range 20 {
					p := bytes.Repeat([]byte("r"), size*1000)
					resp, err := c.Nodes[i].Request(ctx, c.ID(1-i), verbEcho, p)
					if assert.NoError(t, err) {
						assert.Equal(t, len(p), len(resp))
					}
				}
			})
		}
		wg.Go(func() {
			resp, err := c.Nodes[i].Request(ctx, c.ID(1-i), verbEcho, large)
			if assert.NoError(t, err) {
				assert.True(t, bytes.Equal(large, resp))
			}
		})
		wg.Go(func() {
			s, err := c.Nodes[i].OpenStream(ctx, c.ID(1-i), verbRepair)
			if !assert.NoError(t, err) {
				return
			}
			defer s.Close()
			payload := bytes.Repeat([]byte("s"), 512<<10)
			go func() {
				_, _ = s.Write(payload)
				_ = s.CloseWrite()
			}()
			var back bytes.Buffer
			_, err = back.ReadFrom(s)
			assert.NoError(t, err)
			assert.Equal(t, len(payload), back.Len())
		})
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "one-way messages delivered", func() bool { return received.Load() == 2*oneWay })
	// A response reaches its caller before its writer has given back the
	// room it held: wait for that too.
	for i := range c.Nodes {
		waitFor(t, 10*time.Second, fmt.Sprintf("n%d holds nothing to send", i+1), func() bool {
			st := c.Nodes[i].Stats()
			return st.OutboundBytes == 0 && st.Total().PendingBytes == 0
		})
	}
}
