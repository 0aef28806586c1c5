package transporttest

import (
	"net"
	"testing"

	"golang.org/x/net/nettest"
)

// TestMemConnIsANetConn runs the net.Conn conformance suite of
// golang.org/x/net/nettest (deadlines, concurrent use, close semantics,
// large transfers) over the in-memory connections.
func TestMemConnIsANetConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		n := NewNetwork()
		l, err := n.Host("b").Listen("tcp", "b:0")
		if err != nil {
			return nil, nil, nil, err
		}
		c1, err = n.Host("a").DialContext(t.Context(), "tcp", l.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		c2, err = l.Accept()
		if err != nil {
			return nil, nil, nil, err
		}
		stop = func() {
			c1.Close()
			c2.Close()
			l.Close()
			n.Close()
		}
		return c1, c2, stop, nil
	})
}
