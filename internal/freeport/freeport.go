// Package freeport picks loopback ports for tests that must name an
// address before whatever listens on it starts: a node run as a child
// process, or memberlist's gossip address, which Join binds.
//
// A port the kernel chose for a listener (127.0.0.1:0) that was then
// closed comes from the ephemeral range (ip_local_port_range on Linux),
// from which the kernel also gives the local port of every outgoing
// connection: while go test runs packages side by side, another test's
// connection can take that port before the child binds it, and the child
// fails to start. The ports picked here are below that range, where only
// an explicit bind takes a port.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// given is every port Loopback returned in this process: a port is
// free when picked, and nothing holds it after, so a second call could
// otherwise pick a port the first one's caller has not bound yet.
var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Loopback returns n distinct ports below the ephemeral range that are
// free on 127.0.0.1 for TCP and, when udp is set, for UDP too (memberlist
// gossips over both on one port), and that it never returned before in
// this process. They are free when picked; nothing holds them after.
func Loopback(n int, udp bool) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	low := ephemeralLow()
	lo := max(low/2, 1024)
	span := low - lo
	if span < n {
		return nil, fmt.Errorf("freeport: %d ports below the ephemeral range (from %d), %d wanted", span, low, n)
	}
	var held []func()
	defer func() {
		for _, release := range held {
			release()
		}
	}()
	ports := make([]int, 0, n)
	start := rand.IntN(span)
	for i := 0; i < span && len(ports) < n; i++ {
		port := lo + (start+i)%span
		if given[port] {
			continue
		}
		if release, ok := hold(port, udp); ok {
			held = append(held, release) // held until all are picked, so that they differ
			ports = append(ports, port)
		}
	}
	if len(ports) < n {
		return nil, errors.New("freeport: no free loopback port below the ephemeral range")
	}
	for _, port := range ports {
		given[port] = true
	}
	return ports, nil
}

// hold binds port on 127.0.0.1 for TCP, and for UDP when udp, and returns
// what releases it.
func hold(port int, udp bool) (release func(), ok bool) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, false
	}
	if !udp {
		return func() { ln.Close() }, true
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		ln.Close()
		return nil, false
	}
	return func() { ln.Close(); pc.Close() }, true
}

// ephemeralLow is the first port of the kernel's ephemeral range: Linux's
// ip_local_port_range, else the IANA dynamic range's 49152.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > 1024 {
				return low
			}
		}
	}
	return 49152
}
