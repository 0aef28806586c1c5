package transport_test

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// killProxy forwards TCP connections to a target and can kill them at
// random, abruptly (RST), to break a node's connections mid-stream without
// any hook inside the transport; or freeze them: stop forwarding without
// closing anything, as a partition or a frozen process does.
type killProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	pairs  map[*proxyPair]struct{}
	wg     sync.WaitGroup
}

type proxyPair struct {
	a, b   net.Conn
	frozen chan struct{} // closed: forward nothing more
	once   sync.Once
}

func (p *proxyPair) kill() {
	for _, c := range []net.Conn{p.a, p.b} {
		if tcp, ok := c.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0)
		}
		c.Close()
	}
}

func newKillProxy(t testing.TB, target string) *killProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &killProxy{ln: ln, target: target, pairs: make(map[*proxyPair]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *killProxy) addr() string { return p.ln.Addr().String() }

func (p *killProxy) accept() {
	defer p.wg.Done()
	for {
		a, err := p.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			a.Close()
			continue
		}
		pair := &proxyPair{a: a, b: b, frozen: make(chan struct{})}
		p.mu.Lock()
		p.pairs[pair] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, frozenReader{src, pair.frozen})
			pair.kill()
			p.mu.Lock()
			delete(p.pairs, pair)
			p.mu.Unlock()
		}
		go pipe(a, b)
		go pipe(b, a)
	}
}

// killRandom kills one live connection, if any, and reports whether it did.
func (p *killProxy) killRandom(r *rand.Rand) bool {
	p.mu.Lock()
	var victim *proxyPair
	if n := len(p.pairs); n > 0 {
		i := r.IntN(n)
		for pair := range p.pairs {
			if i == 0 {
				victim = pair
				break
			}
			i--
		}
	}
	p.mu.Unlock()
	if victim == nil {
		return false
	}
	victim.kill()
	return true
}

// frozenReader reads from r until frozen is closed, then blocks reading
// until r fails (its pair is killed): bytes stop flowing, nothing closes.
type frozenReader struct {
	r      io.Reader
	frozen chan struct{}
}

func (f frozenReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	select {
	case <-f.frozen:
		for err == nil {
			_, err = f.r.Read(b) // swallowed
		}
		return 0, err
	default:
	}
	return n, err
}

// freezeAll stops forwarding on every connection open now; later ones
// are forwarded as usual.
func (p *killProxy) freezeAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pair := range p.pairs {
		pair.once.Do(func() { close(pair.frozen) })
	}
	return len(p.pairs)
}

func (p *killProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for pair := range p.pairs {
		pair.kill()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
