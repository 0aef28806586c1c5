// Package transporttest starts internode nodes on loopback for tests and
// examples, as net/http/httptest starts servers: a cluster of N transports
// sharing one static membership, each optionally behind a proxy that can
// break or silence its connections, and a throwaway certificate authority
// for tests over mutual TLS (CA: valid, expired or foreign certificates).
//
//	c := transporttest.New(t, 3, transporttest.Options{})   // n1, n2, n3, closed when t ends
//	c.HandleAll(VerbEcho, echo)
//	resp, err := c.Nodes[0].Request(ctx, c.ID(1), VerbEcho, payload)
//
//	c := transporttest.New(t, 2, transporttest.Options{Proxied: true})
//	c.Proxies[1].Freeze() // n2's connections go silent: no FIN, no RST
//
//	ca, err := transporttest.NewCA("test")                   // a throwaway CA
//	c := transporttest.New(t, 3, transporttest.Options{CA: ca}) // every node mutual TLS
//
// Nodes get short reconnect backoffs and a logger that discards; Options.Tweak
// changes any other setting. Start is the same without a testing.TB, for
// examples and benchmarks that are not tests.
package transporttest
