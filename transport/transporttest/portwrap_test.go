package transporttest

import (
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPortsStayValidAfterManyDials: a Network numbers the ports of its
// listeners and of its dialers' ends from one counter. After some 55,000
// connections (a long test that reconnects every few milliseconds) it
// gave ports beyond 65535: Listen at port 0 returned an address that
// Listen itself refuses, so a transport restarted on it (Cluster.Restart)
// could not listen again.
func TestPortsStayValidAfterManyDials(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	l, err := n.Host("b").Listen("tcp", "b:0")
	require.NoError(t, err)
	a := n.Host("a")
	for range 56000 {
		c, err := a.DialContext(t.Context(), "tcp", l.Addr().String())
		require.NoError(t, err)
		s, err := l.Accept()
		require.NoError(t, err)
		c.Close()
		s.Close()
	}
	require.NoError(t, l.Close())

	c, s := connPair(t, n, "a", "b")
	for _, addr := range []net.Addr{c.LocalAddr(), s.LocalAddr()} {
		_, portText, err := net.SplitHostPort(addr.String())
		require.NoError(t, err)
		port, err := strconv.Atoi(portText)
		require.NoError(t, err)
		assert.LessOrEqual(t, port, 65535, "a port is 16 bits: %s", addr)
	}
	l2, err := n.Host("b").Listen("tcp", "b:0")
	require.NoError(t, err)
	addr := l2.Addr().String()
	require.NoError(t, l2.Close())
	l3, err := n.Host("b").Listen("tcp", addr)
	require.NoError(t, err, "listening again on the address port 0 gave")
	l3.Close()
}
