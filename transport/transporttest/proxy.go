package transporttest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Proxy forwards TCP connections to a target and can break them, as a
// network or a peer's failure would, without any hook inside the
// transport: Kill resets them (RST), Freeze silences them (nothing flows,
// nothing closes: a partition, or a frozen process). Connections opened
// after either are forwarded as usual. Otherwise it passes on what a
// socket does: a half-close (FIN) ends one way only, once the bytes before
// it are forwarded, and a reset resets both sides. Safe for concurrent
// use.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	pairs  map[*pair]struct{}
	closed bool
	wg     sync.WaitGroup
}

type pair struct {
	p        *Proxy
	a, b     net.Conn
	frozen   chan struct{} // closed: forward nothing more
	once     sync.Once
	killed   chan struct{} // closed by kill
	killOnce sync.Once
	ended    atomic.Int32 // directions that stopped forwarding; at 2 the pair closes
}

// NewProxy listens on 127.0.0.1 and forwards every connection to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, pairs: make(map[*pair]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address to dial instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
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
		pr := &pair{p: p, a: a, b: b, frozen: make(chan struct{}), killed: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			pr.kill()
			continue
		}
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, err := io.Copy(dst, frozenReader{src, pr})
			if err != nil || dst.(*net.TCPConn).CloseWrite() != nil {
				pr.kill() // a reset, or a failure, ends both ways
			}
			// Else src half-closed: dst gets the FIN once it has read
			// what came before, and the other way goes on.
			if pr.ended.Add(1) < 2 {
				return
			}
			pr.a.Close()
			pr.b.Close()
			p.mu.Lock()
			delete(p.pairs, pr)
			p.mu.Unlock()
		}
		go pipe(a, b)
		go pipe(b, a)
	}
}

// kill closes both sides with a reset; the pair crosses the proxy no
// more (Conns). p.mu not held.
func (pr *pair) kill() {
	pr.killOnce.Do(func() {
		pr.p.mu.Lock()
		delete(pr.p.pairs, pr)
		pr.p.mu.Unlock()
		for _, c := range []net.Conn{pr.a, pr.b} {
			if tcp, ok := c.(*net.TCPConn); ok {
				_ = tcp.SetLinger(0)
			}
			c.Close()
		}
		close(pr.killed)
	})
}

// frozenReader reads from r until the pair is frozen, then reads no more
// until it is killed (a read under way as it freezes returns, and what
// it read is dropped): bytes stop flowing, and back up in the sender's
// socket as towards a frozen process; an end that closes is not heard.
type frozenReader struct {
	r  io.Reader
	pr *pair
}

func (f frozenReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	select {
	case <-f.pr.frozen:
		<-f.pr.killed
		return 0, net.ErrClosed
	default:
	}
	return n, err
}

// Kill resets every connection open now and returns how many it reset.
func (p *Proxy) Kill() int { return p.each(func(pr *pair) { pr.kill() }) }

// KillOne resets one connection open now, chosen by pick among n (pick
// gets n and returns an index), and reports whether there was one.
func (p *Proxy) KillOne(pick func(n int) int) bool {
	p.mu.Lock()
	var victim *pair
	if n := len(p.pairs); n > 0 {
		i := pick(n)
		for pr := range p.pairs {
			if i == 0 {
				victim = pr
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

// Freeze silences every connection open now and returns how many: the
// proxy forwards nothing more, and reads nothing more from either side
// beyond a read under way (at most 32 KiB, dropped), so a writer's bytes fill
// its socket buffers and then its writes wait, and a side that closes is
// not heard by the other. Only Kill or Close ends a frozen connection.
func (p *Proxy) Freeze() int {
	return p.each(func(pr *pair) { pr.once.Do(func() { close(pr.frozen) }) })
}

// Conns returns how many connections cross the proxy now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pairs)
}

func (p *Proxy) each(fn func(*pair)) int {
	p.mu.Lock()
	prs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		prs = append(prs, pr)
	}
	p.mu.Unlock()
	for _, pr := range prs {
		fn(pr)
	}
	return len(prs)
}

// Close stops accepting, resets every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Kill()
	p.wg.Wait()
}
