package transport_test

import (
	"context"
	"io"
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

// relay copies src to dst through fn, and closes dst when it ends.
func relay(dst, src net.Conn, fn relayFunc) {
	defer dst.Close()
	if fn == nil {
		_, _ = io.Copy(dst, src)
		return
	}
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			out, more := fn(total, buf[:n])
			total += int64(n)
			if _, werr := dst.Write(out); werr != nil || !more {
				return
			}
		}
		if err != nil {
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
// way. It counts the server's bytes it read while paused.
type pausableProxy struct {
	addr   string
	mu     sync.Mutex
	gate   chan struct{} // closed while not paused
	held   atomic.Int64
	closed chan struct{}
}

func newPausableProxy(t testing.TB, target string) *pausableProxy {
	p := &pausableProxy{gate: make(chan struct{}), closed: make(chan struct{})}
	close(p.gate)
	p.addr = relayProxy(t, target, nil, func(total int64, b []byte) ([]byte, bool) {
		p.mu.Lock()
		gate := p.gate
		p.mu.Unlock()
		select {
		case <-gate:
			return b, true
		default:
		}
		p.held.Add(int64(len(b)))
		select {
		case <-gate:
			return b, true
		case <-p.closed:
			return nil, false
		}
	})
	t.Cleanup(func() { close(p.closed) }) // registered after the relays': run before theirs
	return p
}

func (p *pausableProxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
}

func (p *pausableProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}
