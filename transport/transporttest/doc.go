// Package transporttest starts internode nodes for tests and examples, as
// net/http/httptest starts servers: a cluster of N transports sharing one
// static membership, on loopback TCP (each optionally behind a proxy that
// can break or silence its connections) or on an in-memory Network that
// partitions, delays, blackholes and resets without root; and a throwaway
// certificate authority for tests over mutual TLS (CA: valid, expired or
// foreign certificates).
//
//	c := transporttest.New(t, 3, transporttest.Options{})   // n1, n2, n3, closed when t ends
//	c.HandleAll(VerbEcho, echo)
//	resp, err := c.Nodes[0].Request(ctx, c.ID(1), VerbEcho, payload)
//
//	c := transporttest.New(t, 2, transporttest.Options{Proxied: true})
//	c.Proxies[1].Freeze() // n2's connections go silent: no FIN, no RST
//
//	c := transporttest.New(t, 3, transporttest.Options{InMemory: true})
//	c.Network.Partition("n1", "n2") // nothing crosses; dials wait
//	c.Network.Heal("n1", "n2")
//	c.Network.Blackhole("n3")       // n3's new connections: accepted, never answered
//	c.Network.Delay("n1", "n3", 20*time.Millisecond)
//	c.Network.Cut("n1", "n3")       // reset every connection between them
//
//	ca, err := transporttest.NewCA("test")                   // a throwaway CA
//	c := transporttest.New(t, 3, transporttest.Options{CA: ca}) // every node mutual TLS
//
// A Network also serves a transport of your own: Network.Host(name)
// gives the Dialer and Listen of a transport.Config (Host.Configure).
// Its connections are buffered (512 KiB each way) like a socket and
// half-close (CloseWrite) as TCP does, but are not *net.TCPConn, and have
// no kernel socket: the transport skips socket options, copies instead of
// sendfile, and leaves the socket queues unmeasured.
//
// Nodes get short reconnect backoffs and a logger that discards; Options.Tweak
// changes any other setting. Start is the same without a testing.TB, for
// examples and benchmarks that are not tests.
package transporttest
