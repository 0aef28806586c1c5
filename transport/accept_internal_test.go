package transport

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestPendingHandshakesAreCountedPerIPv6Prefix: the per-host bound on
// unfinished handshakes was keyed on the whole remote address, so a host
// holding an IPv6 /64 — one address each for 2^64 sockets — was never
// bounded. IPv6 peers are now counted by their /64, IPv4 ones (mapped or
// not) by their address.
func TestPendingHandshakesAreCountedPerIPv6Prefix(t *testing.T) {
	key := func(s string) string { return remoteHostOf(&net.TCPAddr{IP: net.ParseIP(s), Port: 7000}) }
	assert.Equal(t, key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:0:0:9"), "one /64")
	assert.NotEqual(t, key("2001:db8:1:2::1"), key("2001:db8:1:3::1"), "another /64")
	assert.Equal(t, key("10.0.0.1"), key("::ffff:10.0.0.1"), "an IPv4 address, mapped or not")
	assert.NotEqual(t, key("10.0.0.1"), key("10.0.0.2"))
	assert.Equal(t, "10.0.0.1", key("10.0.0.1"))
	assert.NotEqual(t, key("::1"), key("127.0.0.1"))
	assert.Equal(t, "pipe", remoteHostOf(pipeAddr{}), "an address that is not TCP")
}

// hostPortAddr is an address that is not a *net.TCPAddr, written
// "host:port", as a Config.Listen's connections may report.
type hostPortAddr string

func (a hostPortAddr) Network() string { return "custom" }
func (a hostPortAddr) String() string  { return string(a) }

// TestPendingHandshakesAreCountedPerHostWhateverTheAddress: an address
// of another type than *net.TCPAddr was a key of its own, port and all;
// its port is left out now, and an IP address in it keyed as a TCP one.
func TestPendingHandshakesAreCountedPerHostWhateverTheAddress(t *testing.T) {
	tcp := func(s string) string { return remoteHostOf(&net.TCPAddr{IP: net.ParseIP(s), Port: 7000}) }
	assert.Equal(t, tcp("10.0.0.1"), remoteHostOf(hostPortAddr("10.0.0.1:7001")))
	assert.Equal(t, remoteHostOf(hostPortAddr("10.0.0.1:7001")), remoteHostOf(hostPortAddr("10.0.0.1:7002")))
	assert.Equal(t, tcp("2001:db8:1:2::1"), remoteHostOf(hostPortAddr("[2001:db8:1:2::9]:7001")), "one /64")
	assert.Equal(t, tcp("10.0.0.1"), remoteHostOf(hostPortAddr("[::ffff:10.0.0.1]:7001")))
	assert.Equal(t, "n3", remoteHostOf(hostPortAddr("n3:41")), "a host name")
	assert.Equal(t, "/run/node.sock", remoteHostOf(hostPortAddr("/run/node.sock")), "no port")
}
