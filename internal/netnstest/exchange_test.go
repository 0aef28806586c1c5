package netnstest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
)

// rawEchoPort is where a node's plain TCP echo server listens.
const rawEchoPort = 7001

// exchangeCommand parses "exchange <peer> <count> <inflight> <size>
// <timeout>" or "rawecho <addr> ..." (args with the command) and runs it.
func (n *node) exchangeCommand(args []string) (exchangeResult, error) {
	if len(args) != 6 {
		return exchangeResult{}, fmt.Errorf("%s takes 5 arguments, got %d", args[0], len(args)-1)
	}
	count, timeout, err := countAndTimeout(args[2], args[5])
	if err != nil {
		return exchangeResult{}, err
	}
	inflight, err := strconv.Atoi(args[3])
	if err != nil || inflight < 1 || inflight > count {
		return exchangeResult{}, fmt.Errorf("bad number in flight %q", args[3])
	}
	size, err := strconv.Atoi(args[4])
	if err != nil || size < 1 {
		return exchangeResult{}, fmt.Errorf("bad size %q", args[4])
	}
	tag := fmt.Sprintf("%s-%s", n.id, args[0])
	if args[0] == "exchange" {
		peer := cluster.NodeID(args[1])
		return exchanges(count, inflight, func(_, i int) error {
			return n.request(peer, timeout, taggedPayload(tag, i, size))
		})
	}
	return rawExchanges(args[1], count, inflight, size, timeout)
}

// exchanges makes count calls, at most inflight at a time: inflight
// workers, each calling as soon as its previous call returned. The
// interface counters are read around them.
func exchanges(count, inflight int, call func(worker, i int) error) (exchangeResult, error) {
	var (
		r       exchangeResult
		mu      sync.Mutex
		next    atomic.Int64
		workers sync.WaitGroup
		err     error
	)
	if r.Before, err = readLinkCounters(nodeLink); err != nil {
		return r, err
	}
	for worker := range inflight {
		workers.Go(func() {
			for i := int(next.Add(1) - 1); i < count; i = int(next.Add(1) - 1) {
				start := time.Now()
				err := call(worker, i)
				took := time.Since(start)
				mu.Lock()
				r.Calls.record(start, took, err)
				mu.Unlock()
			}
		})
	}
	workers.Wait()
	if r.After, err = readLinkCounters(nodeLink); err != nil {
		return r, err
	}
	return r, nil
}

// rawExchanges is exchanges over plain TCP to a rawEchoServer at addr: one
// connection per exchange in flight, dialled before the counters are read
// and closed after, TCP_NODELAY as the transport's.
func rawExchanges(addr string, count, inflight, size int, timeout time.Duration) (exchangeResult, error) {
	conns := make([]*net.TCPConn, 0, inflight)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range inflight {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return exchangeResult{}, err
		}
		tcp := c.(*net.TCPConn)
		conns = append(conns, tcp)
		if err := tcp.SetNoDelay(true); err != nil {
			return exchangeResult{}, err
		}
	}
	responses := make([][]byte, inflight)
	for worker := range responses {
		responses[worker] = make([]byte, size)
	}
	return exchanges(count, inflight, func(worker, i int) error {
		c, resp := conns[worker], responses[worker]
		payload := taggedPayload("raw", i, size)
		if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		if _, err := c.Write(payload); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return err
		}
		if !bytes.Equal(resp, payload) {
			return fmt.Errorf("%w: sent %q, got %q", errWrongPayload, payload, resp)
		}
		return nil
	})
}

// readLinkCounters reads the counters of the interface link in this
// process's network namespace: "ip netns exec" mounts the namespace's own
// sysfs.
func readLinkCounters(link string) (linkCounters, error) {
	c := linkCounters{At: time.Now()}
	for name, to := range map[string]*uint64{
		"tx_packets": &c.TxPackets, "rx_packets": &c.RxPackets,
		"tx_bytes": &c.TxBytes, "rx_bytes": &c.RxBytes,
	} {
		raw, err := os.ReadFile(filepath.Join("/sys/class/net", link, "statistics", name))
		if err != nil {
			return c, err
		}
		if *to, err = strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64); err != nil {
			return c, fmt.Errorf("%s of %s: %w", name, link, err)
		}
	}
	return c, nil
}

// startRawEcho starts the node's plain TCP echo server on ip, once, and
// returns its address.
func (n *node) startRawEcho(ip string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.rawEcho == nil {
		s, err := listenRawEcho(net.JoinHostPort(ip, strconv.Itoa(rawEchoPort)))
		if err != nil {
			return "", err
		}
		n.rawEcho = s
	}
	return n.rawEcho.ln.Addr().String(), nil
}

// closeRawEcho stops the echo server, if one was started, and waits for
// its goroutines.
func (n *node) closeRawEcho() {
	n.mu.Lock()
	s := n.rawEcho
	n.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// rawEchoServer writes back whatever each connection sends it: the plain
// TCP baseline the transport's exchanges are set against. It is safe for
// concurrent use.
type rawEchoServer struct {
	ln       net.Listener
	handlers sync.WaitGroup // the accept loop and one per connection
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

func listenRawEcho(addr string) (*rawEchoServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &rawEchoServer{ln: ln, conns: make(map[net.Conn]struct{})}
	s.handlers.Go(s.accept)
	return s, nil
}

func (s *rawEchoServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		if tcp, ok := c.(*net.TCPConn); ok {
			_ = tcp.SetNoDelay(true)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.handlers.Go(func() { s.echo(c) })
	}
}

// echo writes back each read as it comes: one in flight, one read is one
// request.
func (s *rawEchoServer) echo(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops accepting, closes every connection and waits for their
// goroutines. It is safe to call twice.
func (s *rawEchoServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.handlers.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
