package transport_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// relayFunc passes a relay's bytes on: given how many came before them,
// it returns what to forward and whether to go on.
type relayFunc func(total int64, b []byte) ([]byte, bool)

// relayProxy relays connections to target, passing the client's bytes
// through up and the server's through down; nil passes them untouched.
func relayProxy(t testing.TB, target string, up, down relayFunc) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				return
			}
			mu.Lock()
			conns = append(conns, a, b)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); relay(b, a, up) }()
			go func() { defer wg.Done(); relay(a, b, down) }()
		}
	}()
	return ln.Addr().String()
}

// relay copies src to dst through fn. When src ends it closes dst's
// writing side only, as a TCP proxy does: closing dst whole while bytes
// from dst's peer wait in it unread would reset the connection, and the
// kernel would throw away what it had not yet sent of src's. For the
// same reason, once dst cannot be written it still reads src to its end.
// When fn says to stop, it closes dst at once.
func relay(dst, src net.Conn, fn relayFunc) {
	buf := make([]byte, 32<<10)
	var total int64
	writing := true
	for {
		n, err := src.Read(buf)
		if n > 0 && writing {
			out, more := buf[:n], true
			if fn != nil {
				out, more = fn(total, buf[:n])
			}
			total += int64(n)
			if !more {
				dst.Close()
				return
			}
			if _, werr := dst.Write(out); werr != nil {
				writing = false // dst's peer is gone
			}
		}
		if err != nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && writing {
				_ = cw.CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

// tamperProxy forwards to target, passing the client's bytes through fn.
func tamperProxy(t testing.TB, target string, fn relayFunc) string {
	return relayProxy(t, target, fn, nil)
}

// slowingProxy relays connections to target (tamperProxy), the bytes
// toward it at full speed for the first fast bytes, then at rate bytes a
// second.
func slowingProxy(t testing.TB, target string, fast int64, bytesPerSecond int) string {
	ctx, cancel := context.WithCancel(context.Background())
	lim := rate.NewLimiter(rate.Limit(bytesPerSecond), 32<<10) // a relay's reads are at most 32 KiB
	addr := tamperProxy(t, target, func(total int64, b []byte) ([]byte, bool) {
		if total >= fast && lim.WaitN(ctx, len(b)) != nil {
			return nil, false
		}
		return b, true
	})
	t.Cleanup(cancel) // before the relays' cleanup, which waits for them
	return addr
}

// pausableProxy relays connections to target; while paused, the server's
// bytes are held back (the client's go on), as on a link congested one
// way. It counts the server's bytes it read while paused. Its up gate
// holds the client's bytes likewise while paused (it is not, at first).
type pausableProxy struct {
	addr string
	*relayGate
	up     *relayGate
	closed chan struct{}
}

func newPausableProxy(t testing.TB, target string) *pausableProxy {
	p := &pausableProxy{closed: make(chan struct{})}
	p.relayGate, p.up = newRelayGate(p.closed), newRelayGate(p.closed)
	p.addr = relayProxy(t, target, p.up.relay, p.relayGate.relay)
	t.Cleanup(func() { close(p.closed) }) // registered after the relays': run before theirs
	return p
}

// relayGate passes a relay's bytes on while open, and holds them, counting
// them, while paused, until resumed or closed.
type relayGate struct {
	mu     sync.Mutex
	gate   chan struct{} // closed while not paused
	held   atomic.Int64
	closed <-chan struct{}
}

func newRelayGate(closed <-chan struct{}) *relayGate {
	g := &relayGate{gate: make(chan struct{}), closed: closed}
	close(g.gate)
	return g
}

// relay is a relayFunc.
func (g *relayGate) relay(_ int64, b []byte) ([]byte, bool) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	select {
	case <-gate:
		return b, true
	default:
	}
	g.held.Add(int64(len(b)))
	select {
	case <-gate:
		return b, true
	case <-g.closed:
		return nil, false
	}
}

func (g *relayGate) pause() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
}

func (g *relayGate) resume() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.gate:
	default:
		close(g.gate)
	}
}
