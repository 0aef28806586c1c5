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
// connection per lane, opened on first use: A writes messages, B writes
// back what keeps the connection alive, the responses to A's requests on
// it, and on the large lane room granted for A's large messages. A large
// response needs no grant: B writes its parts at once, so a response is
// never held behind A's own messages, which B may have stopped reading. A
// message whose encoded size is above Config.Lanes.LargeThreshold (64 KiB)
// goes to the Large lane, the rest to Small, and verbs can be pinned to
// Urgent (gossip, heartbeats) so control traffic never queues behind bulk.
// TCP_NODELAY is set on every connection. Config.Dialer and Config.Listen
// say where connections come from (default: TCP through net.Dialer and
// net.Listen); a conn that is not a *net.TCPConn, such as
// transporttest.Network's in-memory ones, works without the socket
// options, sendfile and socket measurement.
//
// Each connection has one writer goroutine. Send encodes a small message
// straight into the connection's queue (one copy, no allocation) and
// returns; the writer takes everything queued, asks the lane's coalescing
// strategy whether to wait for more (never past a queued message's
// deadline), drops messages that expired while queued, frames the rest
// (CRC32C) and writes them with one vectored write. Writing is a role the
// writer hands over while it waits idle: a message alone in the queue of a
// lane quiet for 200 µs is written by the goroutine that sent it, the same
// way, when the socket's send queue (and the message) are small enough that
// the write cannot block, and then once more what other producers queued
// during that write; a handler's answer likewise. Waking the writer would
// cost most of such a request's round trip. A large message first asks the
// receiver for room for all of it; once granted, it is written from the
// caller's buffer in 256 KiB parts, interleaved with other granted messages
// so one huge message does not hold a smaller one behind it.
//
// Byte streams (OpenStream) share one more connection per peer, a smux
// session, unless opened with OwnConnection: then each has a connection
// of its own, as each SendFile transfer does. A session on which no
// stream was open for Config.Timeouts.Idle is closed, and the next
// stream dials a new one. A Write whose deadline
// passes (Timeouts.Write, or the caller's) ends the stream's writing,
// and the peer reads the stream cut short, except on a connection of its
// own in plain text, where a later Write goes on from where it stopped,
// as on TCP: over TLS the timed-out Write may have left a TLS record
// half written (see Stream.Write).
//
// Batch frames may be compressed (S2, Config.Lanes.Compression), a whole
// frame at a time, when both ends offer it in the handshake. By default
// (CompressionAuto) a connection compresses unless its peer is on a
// loopback address, and after a frame that did not shrink by a tenth it
// sends frames as they are for a while before it tries again, so
// incompressible payloads cost almost nothing. Large messages' parts,
// streams and files are not compressed. ConnStats.CompressedFrames,
// CompressionIn and CompressionOut, and the internode.compression.bytes
// metric, show what it saved.
//
// A lost connection is redialled with capped exponential backoff and
// jitter while messages are pending — at once when it was judged dead, or
// when the peer connects to this node or rejoins the membership. A
// connection that wrote no message for Config.Timeouts.Idle (pings do not
// count) and awaits no response is closed, and the lane's writer goroutine
// exits with it. A lane with nothing to write for 10 ms lets its writer
// goroutine go before that, its connection left open: a timer starts a
// writer when a ping or the idle close is due, as a message does, and
// the connection's reader does when it needs one (a grant to write, the
// connection's end).
//
// # The walk of a message
//
// One Send, from caller to socket (file: function):
//
//	send.go      Send: the header (ID, verb, deadline) and the lane, by size
//	send.go      send, sendOn: the one send path, for responses too
//	peer.go      peerFor, peer.lane: the peer, and its outConn for the lane
//	outconn.go   outConn.enqueue: takes outbound capacity, then
//	queue.go     outQueue.push: copies header and payload into a segment
//	peer.go      peer.startWriter: starts the writer goroutine if none runs
//	outconn.go   outConn.run: the writer's loop; dial.go connect if unconnected
//	outconn.go   outConn.flush: one round of writing
//	coalesce.go  askWait, coalesceWait: how long to wait for more messages
//	queue.go     outQueue.take: the queued segment, whole
//	writer.go    frameWriter.writeBatch: expiry, framing, one vectored write
//	ledger.go    outConn.wrote or outConn.failed: the message's one outcome
//
// Large messages part at flush: largewriter.go largeWriter.step begins
// them, waits for their grants and writes their parts.
//
// One frame, from socket to handler and back:
//
//	accept.go    serveConn: the handshake; then inconn.go newInConn, serve
//	inframes.go  inConn.read: a frame header, checked (kind, lane, length)
//	inframes.go  inConn.readBatch: admit takes capacity, then the payload
//	inframes.go  forEachMessage: each message checked, cancels acted on
//	dispatch.go  inConn.route: each message to its verb's stage or queue
//	stage.go     stage.submit, take: a slot now, or a turn in the queue
//	dispatch.go  runStage or inConn.runQueue: the goroutine that runs it
//	dispatch.go  inConn.handle: expiry, cancel, the handler, the outcome
//	handlerctx.go  handlerContext: the handler's context, made as it is used
//	dispatch.go  Transport.respond: a request's response, or its failure
//	send.go      sendOn: the response, to the connection's replyWriter
//	reply.go     replyWriter.run: writes it back on the request's connection
//	inframes.go  inConn.releaseFrame: the frame's capacity, given back
//
// Large messages: inlarge.go readLargeBegin grants room (or refuses, or
// queues the grant), readLargeMore fills the buffer, deliverLarge hands
// it to handOver; a ReaderHandler gets it as it arrives (readerhandler.go).
//
// The response, at the requester: backchannel.go responseReader.read reads
// its own connection's back channel; readBatch hands each response to
// inframes.go completeCall, and a large response is taken at once (begin:
// room within the limits, no grant written when the handshake agreed
// wire.CapEagerResponses) or refused and its parts discarded, never
// waited for; one whose caller gave up while its parts came is refused,
// granted or eager, and the rest of it discarded: by the caller as it
// gives up (send.go refuseResponse, responseReader.refuseGivenUp), or by
// responseReader.more once the part it is reading is in.
//
// # Requests and responses
//
// A Request names its responder by node ID, and that ID is the
// responder's own internode node ID (its Config.NodeID, the ID of its
// membership entry), not an address or an application's name for it: an
// application with IDs of its own (raft's server IDs and addresses, say)
// maps them to node IDs before calling. The request goes to the address
// the membership gives for that ID, and its response comes back on the
// connection the request went out on; it is matched to its call by the
// peer it comes from and its request ID, which this node never reuses.
// The dial checks that the node at that address is the one named:
// with TLS, that it holds the ID's certificate (ErrRefused otherwise);
// and on every connection, that the ID its handshake reply gives is the
// one named (wire.CapAcceptorID). A node of the cluster found at
// another's address (an address reused before the membership noticed its
// node went away), by its certificate or by its reply, is a failed dial,
// as an unreachable peer is, and so is a dial that reaches this node's
// own listener (by its address, where it is a TCP one): requests fail
// with ErrConnectionReset, and
// one-way messages wait for the named node at its own address. A peer of
// an earlier build gives no ID, and is not checked without TLS. A response for a request whose caller stopped
// waiting is dropped and counted (DroppedInbound, ReasonExpired), as is
// one whose request ID belongs to a call made to another node.
//
// A request fails as soon as it cannot be answered: when the connection
// it was written on breaks (ErrConnectionReset), and when the peer cannot
// be dialled, at the first failed attempt after it was queued
// (ErrConnectionReset wrapping the dial's error; ErrOverloaded when the
// peer refused the connection for want of room or because it is shutting
// down) — it was never written, so the caller may try elsewhere. One-way messages wait for the peer
// until they expire. A lane backing off between dials (up to
// Config.Reconnect.MaxBackoff) dials again at once when the peer is seen
// to be back: when it opens a connection to this node (unless it refused
// the last dial for want of room: it was not away), or when the
// membership reports it joining or changing address. Streams opened to a
// peer that restarted go on a new session at once.
//
// # Dead connections
//
// Both ends speak at least once a second: the sender pings when it has
// nothing to write, the receiver beats whether or not it is reading. A
// side that hears nothing for Config.Timeouts.Keepalive (5 s) closes the
// connection, so a partition or a frozen process is found in seconds, not
// after TCP's retransmission timeouts; requests written on it fail at once
// with ErrConnectionReset. A peer that stops reading is cut off after
// Config.Timeouts.Write (30 s); one that sends a frame slower than
// Config.Timeouts.Keepalive, after that.
//
// Transport.Health shows what the lanes know of each member: connected or
// not, dialling, or backing off until when; the last write and read; the
// failed dials and lost connections since the last connect. Health.Ready
// turns it into a readiness answer by a rule the caller picks (ReadyAll,
// ReadyQuorum) — what a load balancer's probe asks.
//
// # Receiving
//
// The reader of an accepted connection checks the handshake (version,
// cluster name, lane, that the peer is a member and is not this node),
// verifies each frame's checksum and decodes its messages, and hands each
// to its verb's way of running (Handle's options): a stage, a bounded pool
// of concurrent handlers shared by all peers (Concurrent, PerPeer; a
// verb's requests by default), or a queue per connection and verb run one
// at a time in arrival order (Ordered; a verb's one-way messages by
// default), or the reader itself (Inline), for handlers that answer at
// once: no hand-off, and the reader writes the answers to a frame's
// requests together once it has run them, when the write cannot block.
// Expired messages are dropped before their handler sees them. But for
// Inline handlers, the reader never waits for a handler: a slow verb
// delays no other verb's messages, and what waits for a handler holds its
// bytes (and a little for its bookkeeping) against the inbound limits, so
// a backlog pauses or rejects reading as any other would. Stats.Stages
// shows each stage's active handlers, queue and waits. A requester that cancels a Request's
// context sends a cancel on the urgent lane: the handler's context is
// cancelled if it runs, and if it waits it never starts (counted as
// dropped, ReasonCanceled): it leaves its stage or ordered queue as the
// cancel arrives, its part of its frame given back then, so that the
// frame's bytes come back once none of its messages waits or runs. One
// whose deadline passes needs none, as the handler's context carries that
// deadline; waiting, it leaves its queue as its deadline passes, its part
// of its frame given back then and counted as dropped (ReasonExpired),
// rather than holding its room until its turn comes: a one-way message
// too, and a frame of one verb's one-way messages, which waits whole, once
// the last of their deadlines passes. A request still queued when
// its caller gives up (cancelled, or past its deadline), not yet taken by
// its lane's writer, is withdrawn: it is never written, no cancel is sent
// (the peer has nothing to cancel), and its capacity comes back at once.
// A large request whose caller gave up is withdrawn as well, begun or
// not: what is not written of it never is (FrameLargeCancel once begun),
// and the capacity it held on both sides comes back at once. A withdrawn
// request is counted as dropped (ReasonCanceled or ReasonExpired), once.
// A request's response goes back on the connection it came on, written by a goroutine of its own between the
// reader's beats; the requester reads it on its own connection's back
// channel, which it never pauses, so a node whose handlers hold all its
// inbound capacity still gets the responses to its own requests. Bytes that are not valid wire format close that one
// connection, with the reason counted (Stats.BadInput) and logged at a
// bounded rate; the node keeps serving everyone else.
//
// # Bounded memory
//
// The bytes the node holds for messages — queued, being written, received,
// waiting for or inside a handler, responses included, frame and message
// buffers included — never exceed Config.Memory.Outbound.Node in one direction and
// Config.Memory.Inbound.Node in the other, and one peer never holds more than
// PerPeer however many connections it opens. Every byte a connection holds
// is its peer's and the node's too (see Limits). Capacity is taken before a
// buffer is allocated: a frame's header says its length, and a reader
// waits for room before it reads the payload; a large message is granted
// room before its sender may send it.
//
// Out of capacity, Send fails with ErrOverloaded, or waits for room
// (WaitForCapacity); a receiver stops reading the connection (OverloadPause:
// TCP pushes back on the sender) or refuses what it cannot hold
// (OverloadReject). Waiting is first come, first served and costs no CPU.
// A reader never waits for room that only its own unread bytes could
// free, so no combination of limits wedges a connection.
//
// Responses read on a connection's back channel do not wait for inbound
// capacity, so that no one's requests hold up anyone's responses: a batch
// of them is counted while it is read, and may take the peer beyond its
// limit by that one frame per outbound connection; a large response is
// granted room within the peer's limit or, that full, within one
// connection's inbound limit (PerConnection) beyond it, per outbound
// connection, and is refused (its request failing with ErrOverloaded)
// when neither has room.
//
// Outbound, the node's own sends leave an eighth of the Node and PerPeer
// limits to its responses (less when that would leave no room for a
// message of MaxMessageSize): bulk sends that fill the node's room — to a
// peer that stopped reading, say — do not turn the responses it owes
// other peers, or the same peer, into failures.
//
// A response with no outbound room is replaced by a small failure
// (ErrOverloaded), so that its caller learns at once; those failures may
// go 64 KiB beyond the outbound limits (per connection, per peer and
// node-wide) — beyond what was held, when SetLimits lowered a limit below
// it or a connection holds a response above its limit, until that much is
// given back — and past that the response is
// dropped, counted (Dropped[overloaded]), and its caller waits for its
// deadline.
//
// A batch frame of at most 4 KiB on an urgent lane that finds no room is
// taken beyond the limits, one at a time per peer and at most 16 (64 KiB)
// node-wide, held until its handlers return however its connection
// fares, so that control traffic (heartbeats, gossip) and the cancels
// behind it are not held up by the room a peer's requests hold; a frame
// of cancels alone needs no room at all.
//
// A message read and waiting for its handler also holds a few hundred
// bytes of bookkeeping; the reader takes it for a whole frame once the
// frame is read, beyond the limits if need be, so by at most
// wire.MaxBatchMessages messages' worth (about 300 KiB) per connection.
//
// A compressed batch frame waits for room for its decompressed batch, the
// bytes its messages hold; its compressed bytes, held from its header
// until they have all arrived (Keepalive bounds that) and been decoded,
// are counted beyond the limits, by at most one frame per connection,
// and other frames wait for the room they hold.
//
// Outside the limits, and bounded otherwise: per connection a 1 KiB read
// buffer and the goroutines' stacks (Config.Security.MaxConns and MaxConnsPerPeer
// bound the connections); per unfinished handshake (MaxPendingHandshakes
// bounds them, Timeouts.Handshake their time) a 1 KiB buffer and, under
// TLS, what crypto/tls holds of the peer's flight, which may be at most
// 64 KiB (a larger one is refused, RefusedTLS); per large-lane connection, under OverloadPause,
// the headers (parameter blocks of up to 4 KiB included) of at most 8
// large messages waiting for room, as many as a sender begins at once:
// one more begun meanwhile that finds no room is refused as overloaded;
// per connection this node opens, the grants and refusals of large
// responses waiting for its writer, at most 1024 (about 150 KiB) with as
// many being written, its back channel not read past them until the
// writer takes them; per process at most 8 spare queue segments of
// 512 KiB; with OverloadReject, for a batch frame read only to be
// rejected, an 8 KiB buffer it is read through and 32 bytes for each of
// its messages (at most 32 KiB), its messages answered only once the
// whole frame has come and its checksum matched, or for a compressed one,
// which is decoded whole, its decompressed batch, once its block has come
// (the block is held as any compressed frame's, above), both freed as its
// messages are answered — rejected compressed frames hold at most 2 MiB
// in all, block and batch (four of the largest), node-wide however many
// connections carry them: a reader whose frame finds no share of that
// waits for one, reading paused, until another such frame has been
// answered or its connection has ended (Keepalive bounds the arrival of
// each), and counts the wait in ConnStats.Throttled; per session stream
// a read-ahead buffer of 32 KiB, and per peer at most
// StreamConfig.SessionBuffer more as they grow (Stream.Write); per
// stream session this node opened, the peer's bytes that arrived and
// are not yet read ahead, at most StreamConfig.SessionBuffer (a session
// the peer opened takes those from the inbound limits); per
// file transfer being sent or received, a 256 KiB checksum buffer
// (FileConfig.MaxConcurrent bounds those received, the caller's SendFile
// calls those sent); per
// writing connection with compression, the compressed copies of the
// frames of the write under way (at most about a segment, 512 KiB, until
// the write ends or Timeouts.Write cuts it); pooled receive buffers, which
// the garbage collector trims; and the kernel's socket buffers, which the
// system sizes (SocketConfig), of which a connection this node opens on
// the urgent or small lane holds at most about
// SocketConfig.NotSentLowat unsent.
//
// # Outcomes
//
// Every message ends in one counted outcome (see Stats): written to its
// socket (ConnStats.MessagesSent), or failed with a Reason
// (ConnStats.Dropped) — and on the receiving side handed to a handler
// (MessagesReceived) or dropped with a Reason (DroppedInbound). A Request's
// caller always gets the response or an error. A request whose connection
// ended before its handler started is not run
// (DroppedInbound[ReasonConnectionReset]): its response, which goes back
// on that connection, would have nowhere to go, and its caller has failed
// it. Delivery is at most once: a
// one-way message written just before its peer died is lost with the
// connection, as with any protocol without acknowledgements; use Request
// when the sender must know. A large message whose connection broke before
// a byte of its payload left is sent again on the next connection: its
// receiver had not handed it to a handler (a ReaderHandler starts with the
// first part), so it still reaches one once; one it had refused, the
// refusal unread when the connection ended, it refuses again as it did,
// counted once. A large message with no
// payload at all is whole in its first frame, and its receiver hands it
// over as it grants it room: once that frame went out, it is lost with
// the connection (Dropped[ReasonConnectionReset]), whether or not it
// reached its handler.
//
// # Security
//
// Without Config.Security.TLS a node's ID is only claimed in the
// handshake: run plain text only on a network you trust. With it, every
// connection is mutual TLS 1.3 and the transport itself verifies both
// ends: the chain against the configured roots alone, then the identity
// (the certificate's URI SAN, internode://<cluster>/<node>, must name the
// node claimed or dialled), then TLSConfig.VerifyPeer. MutualTLS makes the
// configuration from PEM files; certificates and roots rotate without a
// restart through its Credentials (Reload, or the files polled every
// TLSConfig.ReloadInterval). The README's security section gives the
// procedures.
//
// # Errors
//
// Calls return *OpError values wrapping the sentinels of this package
// (ErrOverloaded, ErrExpired, ErrUnknownVerb, ...) or the context's error;
// test them with errors.Is. A closed transport's errors satisfy
// errors.Is(err, net.ErrClosed); a request timeout satisfies net.Error with
// Timeout() true.
package transport
