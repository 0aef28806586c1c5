package transporttest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/internode/internode/transport"
)

// networkName is what the in-memory network's addresses and errors give
// as their network.
const networkName = "mem"

// Network is an in-memory network of named hosts, for transports that
// should run without sockets, and with faults no real network gives on
// demand: a partition between two hosts, a host that accepts connections
// and never reads them, a delay, a reset of every connection between two
// hosts. No root, no namespaces, no kernel socket: a Host's DialContext
// and Listen go in a transport.Config (Host.Configure), and the transport
// runs over buffered in-memory connections (512 KiB each way, like a
// socket's buffers: a writer beyond it waits).
//
// The zero value is not usable; call NewNetwork. A Network is safe for
// concurrent use; it starts no goroutine.
type Network struct {
	mu         sync.Mutex
	hosts      map[string]bool         // every name Host was called with
	listeners  map[string]*memListener // by "host:port"
	conns      map[*memConn]struct{}   // both ends of every open connection
	links      map[[2]string]*link     // by host pair, sorted
	blackholed map[string]bool         // hosts whose new connections are never accepted
	held       []*memConn              // the unread ends of blackholed connections
	nextPort   int
	changed    chan struct{} // closed and replaced when a fault changes
	closed     bool
}

// link is what lies between two hosts.
type link struct {
	partitioned atomic.Bool  // nothing crosses; dials wait
	delay       atomic.Int64 // added to every write's arrival, ns
}

// NewNetwork returns an empty network with no faults.
func NewNetwork() *Network {
	return &Network{
		hosts:      make(map[string]bool),
		listeners:  make(map[string]*memListener),
		conns:      make(map[*memConn]struct{}),
		links:      make(map[[2]string]*link),
		blackholed: make(map[string]bool),
		nextPort:   firstPort - 1,
		changed:    make(chan struct{}),
	}
}

// Host returns the host named name ("n1", say; not an IP address), whose
// addresses are "name:port". Any name works, and the host exists from the
// first call on. The methods that name hosts (Partition, Heal, Delay,
// Cut, Conns, Blackhole, Unblackhole) panic for a name no Host call has
// given, and those that name two for the same host twice: a misspelt
// name would otherwise make a fault that does nothing, and a test that
// passes for the wrong reason. An in-memory Cluster's hosts are its node
// IDs.
func (n *Network) Host(name string) *Host {
	n.mu.Lock()
	n.hosts[name] = true
	n.mu.Unlock()
	return &Host{net: n, name: name}
}

// checkHosts panics unless every name is a host of n, and two names are
// not the same host; op names the method. It takes n.mu itself and
// releases it before the panic reaches the caller.
func (n *Network) checkHosts(op string, names ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	quoted := make([]string, len(names))
	for i, name := range names {
		quoted[i] = strconv.Quote(name)
	}
	call := op + "(" + strings.Join(quoted, ", ") + ")"
	for _, name := range names {
		if !n.hosts[name] {
			panic(fmt.Sprintf("transporttest: %s: no host %q on this network (hosts: %s); "+
				"a host exists once Network.Host has returned it", call, name, n.hostListLocked()))
		}
	}
	if len(names) == 2 && names[0] == names[1] {
		panic(fmt.Sprintf("transporttest: %s: host %q twice: a fault lies between two hosts (hosts: %s)",
			call, names[0], n.hostListLocked()))
	}
}

// hostListLocked returns n's host names, sorted, separated by commas. n.mu
// held.
func (n *Network) hostListLocked() string {
	return strings.Join(slices.Sorted(maps.Keys(n.hosts)), ", ")
}

// linkFor returns the link between hosts a and b; n.mu held.
func (n *Network) linkFor(a, b string) *link {
	key := [2]string{min(a, b), max(a, b)}
	lk := n.links[key]
	if lk == nil {
		lk = &link{}
		n.links[key] = lk
	}
	return lk
}

// between returns the open ends of connections whose hosts are a and b
// (in either order): two for a connection open at both ends, one for a
// connection one end has closed; n.mu held.
func (n *Network) between(a, b string) []*memConn {
	var out []*memConn
	joins := func(c *memConn) bool {
		return (c.local.host == a && c.remote.host == b) || (c.local.host == b && c.remote.host == a)
	}
	for c := range n.conns {
		if joins(c) {
			out = append(out, c)
		}
	}
	// A blackholed connection's unread end is held, not in conns: Cut
	// resets it with its dialer's.
	for _, c := range n.held {
		if joins(c) {
			out = append(out, c)
		}
	}
	return out
}

// connections returns how many connections the ends are of.
func connections(ends []*memConn) int {
	conns := make(map[*stream]bool, len(ends))
	for _, c := range ends {
		conns[c.conn] = true
	}
	return len(conns)
}

// faultChanged wakes dials waiting on a partition; n.mu held.
func (n *Network) faultChanged() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// Partition cuts hosts a and b off from each other, both ways, as a
// network partition does: open connections between them stay open but
// carry nothing, not even a close (writes fill the buffer, then wait,
// even to an end that closed), and new dials wait
// until Heal or their context ends. Neither end learns of it except by
// silence: the transports' keepalives and timeouts must notice.
func (n *Network) Partition(a, b string) {
	n.checkHosts("Partition", a, b)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linkFor(a, b).partitioned.Store(true)
	n.faultChanged()
}

// Heal ends the partition between a and b: what open connections held
// flows again and waiting dials go ahead.
func (n *Network) Heal(a, b string) {
	n.checkHosts("Heal", a, b)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linkFor(a, b).partitioned.Store(false)
	n.faultChanged()
	// Both streams of each end: the end's peer may have closed, and be
	// gone from conns, while its writer waits on the partition.
	for _, c := range n.between(a, b) {
		c.in.notify()
		c.out.notify()
	}
}

// HealAll ends every partition, delay and blackhole (resetting, as
// Unblackhole does, the connections blackholes swallowed).
func (n *Network) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, lk := range n.links {
		lk.partitioned.Store(false)
		lk.delay.Store(0)
	}
	clear(n.blackholed)
	// Left held, their dialers' connections would stay silent for ever.
	reset := n.held
	n.held = nil
	n.faultChanged()
	for c := range n.conns {
		c.in.notify()
		c.out.notify()
	}
	for _, c := range reset {
		c.reset()
		c.Close()
	}
}

// Delay adds d to the time every byte written from then on between hosts a
// and b takes to arrive, each way; 0 removes it. Order is kept.
func (n *Network) Delay(a, b string, d time.Duration) {
	n.checkHosts("Delay", a, b)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.linkFor(a, b).delay.Store(int64(d))
}

// Blackhole makes host's new connections succeed for the dialer and never
// reach host's listener: what the dialer writes is buffered, then waits,
// and nothing ever answers (a process that accepts and never reads, or a
// firewall that eats the traffic). Connections open before it are not
// touched: Partition them. Heal with Unblackhole or HealAll.
func (n *Network) Blackhole(host string) {
	n.checkHosts("Blackhole", host)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blackholed[host] = true
}

// Unblackhole lets host's new connections reach its listener again; those
// swallowed so far are reset.
func (n *Network) Unblackhole(host string) {
	n.checkHosts("Unblackhole", host)
	n.mu.Lock()
	delete(n.blackholed, host)
	var keep, reset []*memConn
	for _, c := range n.held {
		if c.local.host == host {
			reset = append(reset, c)
		} else {
			keep = append(keep, c)
		}
	}
	n.held = keep
	n.mu.Unlock()
	for _, c := range reset {
		c.reset()
		c.Close()
	}
}

// Cut resets every connection open now between hosts a and b, as a TCP
// reset does (both ends' reads and writes fail with ECONNRESET), and
// returns how many it reset: a connection one end has closed counts, and
// its open end is reset. New connections are not affected.
func (n *Network) Cut(a, b string) int {
	n.checkHosts("Cut", a, b)
	n.mu.Lock()
	ends := n.between(a, b)
	n.mu.Unlock()
	for _, c := range ends {
		c.reset()
	}
	return connections(ends)
}

// Conns returns how many connections are open between hosts a and b: a
// connection counts until both its ends are closed (one closed by one end
// only is open at the other, as a TCP socket in CLOSE_WAIT is), and a
// reset one until then too.
func (n *Network) Conns(a, b string) int {
	n.checkHosts("Conns", a, b)
	n.mu.Lock()
	defer n.mu.Unlock()
	return connections(n.between(a, b))
}

// Close resets every connection and closes every listener. Safe to call
// more than once. It does not close connections for their owners: their
// reads and writes fail with ECONNRESET, as a reset's do, and their Close
// returns nil.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	var ends []*memConn
	for c := range n.conns {
		ends = append(ends, c)
	}
	held := n.held // no one owns these ends: close them
	n.held = nil
	var lns []*memListener
	for _, l := range n.listeners {
		lns = append(lns, l)
	}
	n.faultChanged()
	n.mu.Unlock()
	for _, l := range lns {
		l.Close()
	}
	for _, c := range ends {
		c.reset()
	}
	for _, c := range held {
		c.reset()
		c.Close()
	}
}

// release drops the unread end of a blackholed connection whose dialer
// closed it.
func (n *Network) release(server *memConn) {
	n.mu.Lock()
	for i, c := range n.held {
		if c == server {
			n.held = append(n.held[:i], n.held[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	server.Close()
}

// forget drops a closed connection end; it is the memConn's onClose.
func (n *Network) forget(c *memConn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// Host is one machine of a Network. Its DialContext and Listen are the
// transport.Config fields Dialer and Listen (see Configure). Safe for
// concurrent use.
type Host struct {
	net  *Network
	name string
}

var _ transport.Dialer = (*Host)(nil)

// Name returns the host's name.
func (h *Host) Name() string { return h.name }

// Configure makes cfg's transport listen on this host, at a port the
// network picks, and dial from it.
func (h *Host) Configure(cfg *transport.Config) {
	cfg.ListenAddr = net.JoinHostPort(h.name, "0")
	cfg.Dialer = h
	cfg.Listen = h.Listen
}

// Listen binds address, "host:port" with this host's name or an empty
// host; port 0 picks a free one. The network argument is not checked:
// the transport asks for "tcp".
func (h *Host) Listen(_, address string) (net.Listener, error) {
	host, portText, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: networkName, Err: err}
	}
	if host != "" && host != h.name {
		return nil, &net.OpError{Op: "listen", Net: networkName,
			Err: fmt.Errorf("transporttest: host %q cannot listen on %q: %w", h.name, address, syscall.EADDRNOTAVAIL)}
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, &net.OpError{Op: "listen", Net: networkName, Err: fmt.Errorf("transporttest: bad port in %q", address)}
	}
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, &net.OpError{Op: "listen", Net: networkName, Err: net.ErrClosed}
	}
	for tries := 0; port == 0; tries++ {
		if tries > lastPort-firstPort {
			return nil, &net.OpError{Op: "listen", Net: networkName, Err: syscall.EADDRINUSE}
		}
		if p := n.pickPort(); n.listeners[memAddr{h.name, p}.String()] == nil {
			port = p
		}
	}
	addr := memAddr{h.name, port}
	if _, used := n.listeners[addr.String()]; used {
		return nil, &net.OpError{Op: "listen", Net: networkName, Addr: addr, Err: syscall.EADDRINUSE}
	}
	l := &memListener{net: n, addr: addr, backlog: make(chan *memConn, listenBacklog), closed: make(chan struct{})}
	n.listeners[addr.String()] = l
	return l, nil
}

// The ports a Network picks, for Listen at port 0 and for dialers' ends,
// run from firstPort to lastPort, then from firstPort again.
const (
	firstPort = 10001
	lastPort  = 65535
)

// pickPort returns the next port in turn; n.mu held.
func (n *Network) pickPort() int {
	n.nextPort++
	if n.nextPort > lastPort {
		n.nextPort = firstPort
	}
	return n.nextPort
}

// listenBacklog is how many connections a listener holds dialled and not
// yet accepted; beyond it a dial is refused.
const listenBacklog = 128

// DialContext connects to address, "host:port". It fails at once if
// nothing listens there (ECONNREFUSED), and waits for ctx while the two
// hosts are partitioned. With ctx ended it returns ctx's error and
// connects nothing, as a net.Dialer does.
func (h *Host) DialContext(ctx context.Context, _, address string) (net.Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: networkName, Source: memAddr{h.name, 0}, Err: err}
	}
	to, err := resolve(address)
	if err != nil {
		return nil, opErr(err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, opErr(err)
		}
		c, partitioned, err := h.connect(to)
		if partitioned == nil {
			if err != nil {
				return nil, opErr(err)
			}
			return c, nil
		}
		// SYNs are lost: wait for a heal, or give up with ctx.
		select {
		case <-partitioned:
		case <-ctx.Done():
			return nil, opErr(ctx.Err())
		}
	}
}

// connect makes a connection to address unless the hosts are partitioned,
// in which case it returns a channel closed when that may have changed.
func (h *Host) connect(to memAddr) (*memConn, <-chan struct{}, error) {
	n := h.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, nil, net.ErrClosed
	}
	lk := n.linkFor(h.name, to.host)
	if lk.partitioned.Load() {
		return nil, n.changed, nil
	}
	l := n.listeners[to.String()]
	blackholed := n.blackholed[to.host]
	if l == nil && !blackholed {
		return nil, nil, syscall.ECONNREFUSED
	}
	client, server := newPipe(memAddr{h.name, n.pickPort()}, to, lk)
	client.onClose = n.forget
	if blackholed {
		n.held = append(n.held, server)
		client.onClose = func(c *memConn) {
			n.forget(c)
			n.release(server)
		}
	} else {
		// Set before the listener has it: its Accept may close it at
		// once (a refusal), while this still runs.
		server.onClose = n.forget
		select {
		case l.backlog <- server:
		default:
			return nil, nil, syscall.ECONNREFUSED
		}
		n.conns[server] = struct{}{}
	}
	n.conns[client] = struct{}{}
	return client, nil, nil
}

func resolve(address string) (memAddr, error) {
	host, portText, err := net.SplitHostPort(address)
	if err != nil {
		return memAddr{}, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return memAddr{}, fmt.Errorf("transporttest: bad port in %q", address)
	}
	return memAddr{host, port}, nil
}

// memListener accepts a Host's in-memory connections.
type memListener struct {
	net       *Network
	addr      memAddr
	backlog   chan *memConn
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.backlog:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: networkName, Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close stops accepting; connections dialled and not accepted are reset.
func (l *memListener) Close() error {
	err := error(&net.OpError{Op: "close", Net: networkName, Addr: l.addr, Err: net.ErrClosed})
	l.closeOnce.Do(func() {
		err = nil
		l.net.mu.Lock()
		delete(l.net.listeners, l.addr.String())
		l.net.mu.Unlock()
		close(l.closed)
		for {
			select {
			case c := <-l.backlog:
				c.reset()
				c.Close()
			default:
				return
			}
		}
	})
	return err
}

func (l *memListener) Addr() net.Addr { return l.addr }

// memAddr is an address on a Network: "host:port".
type memAddr struct {
	host string
	port int
}

func (a memAddr) Network() string { return networkName }
func (a memAddr) String() string  { return net.JoinHostPort(a.host, strconv.Itoa(a.port)) }
