// Package transport moves messages between the nodes of a distributed
// database: replication, gossip, repair, hints. It is embedded in each node;
// there is no broker.
//
// # Use
//
//	cfg := transport.DefaultConfig()
//	cfg.NodeID = "n1"
//	cfg.ClusterName = "orders-prod"
//	cfg.ListenAddr = "10.0.0.1:7000"
//	cfg.Membership = cluster.NewStatic(members...)
//	t, err := transport.New(cfg) // binds the listener
//	t.Handle(VerbRead, transport.HandlerFunc(read))
//	t.Start()                    // or go t.Serve()
//	defer t.Close()              // or t.Shutdown(ctx) to drain first
//
//	err = t.Send(ctx, "n2", VerbGossip, payload)        // one-way
//	resp, err := t.Request(ctx, "n2", VerbRead, payload) // request/response
//
// # Lanes and connections
//
// For every ordered pair of nodes (A→B) there is one outbound TCP
// connection per lane, opened on first use, used in one direction only: A
// writes, B reads. B's replies travel on B's own connections to A. A message
// whose encoded size is above Config.LargeThreshold (64 KiB) goes to the
// Large lane, the rest to Small, and verbs can be pinned to Urgent (gossip,
// heartbeats) so control traffic never queues behind bulk. TCP_NODELAY is
// set on every connection.
//
// Each connection has one writer goroutine. Send encodes a small message
// straight into the connection's pooled queue buffer (one copy, no
// allocation) and returns; the writer takes everything queued, asks the
// lane's coalescing strategy whether to wait for more, drops messages that
// expired while queued, frames the rest (CRC32C) and writes them with one
// vectored write. Large messages are written from the caller's buffer in
// 256 KiB parts, interleaved with other large messages in flight so one
// huge message does not hold a smaller one behind it for its whole transfer.
//
// A lost connection is redialled with capped exponential backoff and
// jitter while messages are pending; a connection idle for
// Config.IdleTimeout is closed.
//
// # Receiving
//
// The reader of an accepted connection checks the handshake (version,
// cluster name, lane), verifies each frame's checksum and decodes its
// messages. Responses complete their Request directly; expired messages are
// dropped before their handler sees them; everything else goes to the
// connection's dispatcher, which calls handlers one at a time in arrival
// order. A handler that blocks holds up only its sender's lane, and once
// the dispatcher's queue is full the reader stops reading that connection,
// so TCP pushes back on the sender. Bytes that are not valid wire format
// close that one connection, with the reason logged and counted
// (Stats.InboundMalformed); the node keeps serving everyone else.
//
// # Outcomes
//
// Every message ends in one counted outcome (see Stats): written to its
// socket (ConnStats.MessagesSent), or failed with a Reason
// (ConnStats.Dropped) — and on the receiving side handed to a handler
// (MessagesReceived) or dropped with a Reason (DroppedInbound). A Request's
// caller always gets the response or an error. Delivery is at most once: a
// one-way message written just before its peer died is lost with the
// connection, as with any protocol without acknowledgements; use Request
// when the sender must know.
//
// # Errors
//
// Calls return *OpError values wrapping the sentinels of this package
// (ErrOverloaded, ErrExpired, ErrUnknownVerb, ...) or the context's error;
// test them with errors.Is. A closed transport's errors satisfy
// errors.Is(err, net.ErrClosed); a request timeout satisfies net.Error with
// Timeout() true.
package transport
