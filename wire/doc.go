// Package wire encodes and decodes the bytes internode nodes exchange: the
// handshake that opens a connection, the frames that carry messages after
// it, the message header, its parameter block and the failure payload, and
// what travels inside each stream of a stream session (or on a stream
// connection of its own) and on a file-transfer connection.
//
// The package does no I/O of its own apart from the Read* functions
// (ReadHandshake, ReadFileHeader, ReadFileResult, ReadStreamOpen), each of
// which reads one item from a caller's reader and nothing past it; it keeps
// no state and starts no goroutines; every function is safe for concurrent use.
// Encoders append to a caller's slice (the Append* functions) so that a
// caller with a buffer of enough capacity encodes without allocating.
// Decoders read from a caller's slice; where a decoded value holds bytes
// (Header.Params, RangeParams) they alias the input, so the input must not
// be reused while they are in use.
//
// # Byte order and integers
//
// Fixed-width integers are big-endian (network byte order). A "uvarint" is
// an unsigned LEB128 varint as written by encoding/binary.AppendUvarint:
// seven bits a byte, least significant group first, high bit set on every
// byte but the last. Decoders accept only the shortest encoding of a value
// (a final byte of 0x00 in a varint of two or more bytes is malformed), so
// every value has exactly one encoding and every header has a known bound.
//
// # Connections
//
// A connection carries one lane from one node to another. The side that
// dials (the initiator) writes a Hello; the acceptor answers with a Reply;
// then the initiator writes its messages — one-way messages and requests —
// and the acceptor writes back on the same connection (the back channel)
// the responses to those requests, beats that keep it alive, and on the
// large lane the grants and refusals of the initiator's large messages:
//
//	initiator                          acceptor
//	    | ---------- Hello ------------->  |
//	    | <--------- Reply --------------  |   accepted: version chosen
//	    | ---------- frame ------------->  |   messages, pings, grants of large responses
//	    | <--------- frame --------------  |   back channel: responses, beats, grants
//	    | ---------- frame ------------->  |
//	    ...
//
// The handshake's lane byte says what the connection carries: 0 urgent,
// 1 small and 2 large message lanes (frames, as below); 3 a stream
// session, after which both sides speak smux protocol v2 (see Streams);
// 4 one file transfer (see File transfer); 5 one stream on a connection
// of its own (see Streams).
//
// A node answers a request on the connection the request came on, the
// other way: as a FrameBatch when it is small, on any lane, and otherwise
// in large-message parts (FrameLargeBegin, FrameLargeMore) that the
// requester first grants room for, also on any lane (see Large
// messages). Which it is, is the responder's choice, not a matter of the
// frame limit: internode sends in parts every response whose encoded
// header and payload exceed its large threshold (64 KiB by default,
// Config.Lanes.LargeThreshold), so a requester must take a large
// response on the urgent and small lanes too, of any size. So a
// responder needs no connection of its own to the
// requester, which may be a node it does not know or a client that listens
// nowhere; the requester reads its responses on a connection it never
// stops reading for want of memory, so they never wait behind the
// responder's own requests to it; and each direction's TCP
// acknowledgements ride on the other's data. A response never travels from
// initiator to acceptor: that is malformed. A request that expired before
// it was handled gets no response; its sender's deadline ends it.
//
// A receiver may also answer a one-way message, to say it dropped it: an
// internode node whose inbound capacity is full and that is configured to
// reject (Config.Memory.InboundOverload = OverloadReject) sends a
// response with FlagFailure (FailureOverloaded) carrying the one-way
// message's ID and verb. A sender takes a response for an ID it is not
// waiting for as such a notice (or ignores it); it is not malformed.
//
// With TLS (internode's Config.Security.TLS) the connection is TLS 1.3,
// mutually authenticated, from its first byte, and everything below
// travels inside it. Each certificate carries one URI SAN,
// internode://<cluster>/<node> (the node ID escaped as a URI path), and
// the node of the Hello must be the one the certificate names, or the
// acceptor refuses with IdentityMismatch. A node that requires TLS
// answers a plain-text Hello with a Reply refusing it (Refused) and
// closes; internode without TLS answers a TLS ClientHello with a fatal
// handshake_failure alert and closes.
//
// # Handshake
//
// Both handshake messages start with the magic and a body length, and end
// with a CRC32C (Castagnoli) of every byte before it. body_len counts the
// bytes after it, checksum included. An encoded message is at most
// MaxHandshakeSize (1024) bytes, body_len at most 1018 of them: a reader
// refuses a body_len above that, or below 4 (no room for the checksum),
// before reading the body, and reads any other body_len bytes before it
// checks them (a Hello's fields need at least 14).
//
// Hello, from the initiator (20 to 529 bytes; 19 with the empty node ID
// every acceptor refuses):
//
//	+-----------+--------------+------------+------------+----------+------------------+
//	| magic (4) | body_len (2) | min_ver(1) | max_ver(1) | lane (1) | capabilities (4) | ...
//	+-----------+--------------+------------+------------+----------+------------------+
//	     +-----------------+-------------+--------------+------------+------------+
//	 ... | cluster_len (1) | cluster (n) | node_len (1) | node (m)   | crc32c (4) |
//	     +-----------------+-------------+--------------+------------+------------+
//
//	magic         0x494E4F44, "INOD" in ASCII
//	min_ver       lowest protocol version offered, at least 1
//	max_ver       highest protocol version offered, at least min_ver
//	lane          what this connection carries: 0-2 a lane of package
//	              routing, 3 stream session, 4 file transfer, 5 stream
//	              connection of its own
//	capabilities  bit set of optional features offered (see Versioning):
//	              bit 0 CapBatchS2, compressed batch frames
//	              bit 1 CapEagerResponses, large responses ungranted
//	              bit 2 CapFileFlags, flags in a FileHeader
//	              bit 3 CapAcceptorID, the acceptor's node ID in its
//	              Reply
//	cluster       cluster name, 0..255 bytes of any value, compared byte
//	              for byte (an acceptor refuses any other than its own:
//	              WrongCluster)
//	node          sender's node ID, 1..255 bytes of any value (an
//	              acceptor refuses an empty one and its own, with
//	              Refused, and by default one its membership does not
//	              list, with UnknownNode: an internode node accepts a
//	              peer that is not a member only with
//	              Config.Security.AcceptUnknownPeers)
//
// Reply, from the acceptor (17 to 272 bytes):
//
//	+-----------+--------------+-------------+------------+------------------+
//	| magic (4) | body_len (2) | version (1) | reason (1) | capabilities (4) | ...
//	+-----------+--------------+-------------+------------+------------------+
//	     +-----------------+-------------+------------+
//	 ... | message_len (1) | message (n) | crc32c (4) |
//	     +-----------------+-------------+------------+
//
//	version       the version chosen, 0 if and only if reason is not Accepted
//	reason        a RefuseReason: 0 Accepted, 1 UnsupportedVersion,
//	              2 WrongCluster, 3 UnknownNode, 4 IdentityMismatch,
//	              5 BadLane, 6 Refused, 7 Busy (no room now: try
//	              again later); an initiator takes a reason it does
//	              not know as Refused
//	capabilities  the offered bits the acceptor also has
//	message       human-readable detail, 0..255 bytes; in an accepting
//	              Reply whose capabilities carry CapAcceptorID, the
//	              acceptor's node ID
//
// A Hello that cannot be read or decoded (bad magic, a body_len out of
// bounds, a bad checksum, lengths that do not add up, min_ver 0 or above
// max_ver) gets no Reply: the acceptor closes the connection. Any other
// Hello gets a Reply; a refusing acceptor closes the connection right
// after it. internode checks, in this order, the version range, the
// cluster, the lane, the node ID (empty, its own), the TLS identity and
// membership, and answers the first that fails; then Busy if it holds as
// many connections of that lane from the initiator as it allows (4 by
// default), or as many in all, or is shutting down. A stream connection
// (lanes 3 and 5) holds a buffer of the acceptor's inbound room while it
// is open: internode answers one Busy when that room is not free now,
// and Refused when its limits could never hold the buffer. An acceptor
// waits its handshake timeout (internode: 5 s) for the Hello, and an
// initiator as long for the Reply.
//
// An acceptor that accepts a Hello offering CapAcceptorID, and has the
// capability, answers with the bit and its own node ID as the message. The
// initiator compares that ID with the node it meant to reach, and closes
// the connection if they differ: the address it dialled belongs to
// another node now (an address reused after its node went away, before
// the membership noticed). Without TLS, whose certificate names the node,
// nothing else tells the initiator so. internode offers and accepts
// CapAcceptorID on every kind of connection, and takes such a mismatch
// as a failed dial, tried again later, not as a refusal.
//
// For example, the Hello of node "n1" of cluster "c", offering version 3 on
// lane 2 with no capabilities, is these 22 bytes:
//
//	49 4e 4f 44  00 10  03 03 02  00 00 00 00  01 63  02 6e 31  4e 47 66 65
//	magic        len    min max lane  caps     "c"    "n1"      crc32c
//
// # Frames
//
// After the handshake both sides write frames. A frame is a 12-byte
// header followed by its payload:
//
//	 0            4          5            8            12
//	+------------+----------+------------+------------+------------------+
//	| length (4) | kind (1) | stream (3) | crc32c (4) | payload (length) |
//	+------------+----------+------------+------------+------------------+
//
//	length  payload length in bytes (not counting the header)
//	kind    a FrameKind (below)
//	stream  24-bit big-endian large-message stream number, 1 to MaxStream
//	        (2^24-1), for the kinds that name one; 0 for the others
//	crc32c  CRC32C of header bytes 0..7 followed by the payload
//
// The kinds, who sends them and on which lanes:
//
//	kind                 from       lanes          stream  payload
//	0 FrameBatch         initiator  urgent, small  0       whole messages, no responses
//	                     acceptor   all three      0       whole responses
//	1 FrameLargeBegin    initiator  large          yes     one message header, not a response's
//	                     acceptor   all three      yes     one response's header
//	2 FrameLargeMore     as FrameLargeBegin         yes     the next payload bytes
//	3 FrameLargeCancel   as FrameLargeBegin         yes     a Failure: why
//	4 FramePing          initiator  all three      0       empty
//	5 FrameGrant         acceptor   large          yes     empty
//	                     initiator  all three      yes     empty
//	6 FrameRefuse        acceptor   large          yes     a Failure: why
//	                     initiator  all three      yes     a Failure: why
//	7 FrameBeat          acceptor   all three      0       empty
//	8 FrameBatchS2       as FrameBatch, and only    0       a FrameBatch payload,
//	                     with CapBatchS2 agreed             compressed (below)
//
// Each side numbers the large messages it sends in its own stream-number
// space; a FrameGrant or FrameRefuse names a stream of the other side's.
//
// A reader closes the connection on a kind from the wrong side or lane, a
// stream number where the kind has none (or none where it needs one), and
// a payload on a kind that carries none (ParseFrameHeader checks the last
// two). The checksum catches corruption, not forgery (TLS is for that). A
// reader refuses a length above its limit (DefaultMaxFramePayload, 256 KiB;
// internode's limit is always that) from the header alone, before it
// allocates or reads the payload; writers never write larger frames.
//
// A FrameBatch payload is one or more whole messages back to back (an
// empty one is malformed), at most
// MaxBatchMessages (1024) of them, each a message header immediately
// followed by payload_len bytes of payload:
//
//	+----------+-----------+----------+-----------+-----
//	| header 1 | payload 1 | header 2 | payload 2 | ...
//	+----------+-----------+----------+-----------+-----
//
// A batch with any malformed message (or more than MaxBatchMessages) is
// malformed as a whole: none of its messages reaches a handler, and the
// connection is closed.
//
// A reader need not hold a batch to act on it once it is whole. The
// checksum covers the whole payload, so a reader that reads a batch a
// piece at a time (internode does so with a batch it rejects for want of
// room: it keeps of each message only what its answer takes) acts on none
// of its messages until the last byte has come and the checksum matched.
// A damaged batch is a checksum mismatch, whatever its damage did to its
// messages' headers, as it is for a reader that holds it whole and checks
// the checksum first.
//
// # Compressed batches
//
// When the Reply's capabilities carry CapBatchS2 (bit 0: both sides
// offered it), either side may send any batch frame as a FrameBatchS2
// instead, wherever a FrameBatch may go; without it a FrameBatchS2 is
// malformed. Each writer chooses frame by frame (internode sends a frame
// as it is when compressing it would not save enough), and each direction
// on its own. The payload is one S2 block
// (https://github.com/klauspost/compress/tree/master/s2#format-extensions),
// which is Snappy's block format
// (https://github.com/google/snappy/blob/main/format_description.txt) with
// S2's extensions; any Snappy block is a valid S2 block, so a writer may
// use a Snappy encoder, while a reader needs an S2 decoder:
//
//	+---------------------+-----------------------------------------+
//	| plain_len (uvarint) | literals and copies (S2 tagged elements) |
//	+---------------------+-----------------------------------------+
//
//	plain_len  bytes of the FrameBatch payload the block decodes to,
//	           1 to the reader's frame limit, minimally encoded
//
// The decoded bytes are a FrameBatch payload and are read as one, with
// the same rules (whole messages, at most MaxBatchMessages). A writer
// compresses only batches that it could have sent as a FrameBatch: at
// most DefaultMaxFramePayload bytes decoded. The frame's crc32c covers
// the header and the payload as sent — the compressed bytes — so damage
// is caught before the block is decoded; the decoded batch has no
// checksum of its own. A reader reads plain_len from the payload's first
// bytes (at most MaxBatchS2Prefix, 5) and refuses, before it allocates
// anything for the batch, a plain_len of 0 (ErrMalformed), and one above
// its frame limit or whose uvarint does not end within those 5 bytes
// (ErrFrameTooLarge): a small frame cannot make a reader hold more than a
// frame. A block longer than len(uvarint(plain_len)) + 6·plain_len bytes
// (MaxBatchS2Block) is malformed — no block that long decodes to
// plain_len bytes, every element costing at most 6 bytes per byte it
// yields — and a reader refuses it from the frame's Length and plain_len,
// before it holds the rest of the block. Since plain_len is read before
// the checksum is checked, a reader that refuses a frame for it reads
// the rest of the payload through the checksum, a piece at a time,
// before it says why: a mismatch is damage (ErrChecksum), which may have
// hit plain_len, not a peer that does not speak the format. (The bound
// is not the longest block an S2 encoder writes, MaxBatchS2Len: a Snappy
// encoder's blocks can be longer, and are valid.) A block that does not
// decode to exactly plain_len bytes is malformed. AppendBatchS2,
// BatchS2Len, MaxBatchS2Block, FrameHeader.HeaderChecksum (a payload
// checked a piece at a time) and DecodeBatchS2 do each step.
//
// For example, a block whose batch is "abcabcabcabc" (12 bytes) — a
// 3-byte literal, then a copy of 9 bytes from 3 back:
//
//	0c         08 61 62 63             15 03
//	plain_len  literal, len 3: "abc"   copy, len 9, offset 3
//
// Large messages' parts (FrameLargeBegin, FrameLargeMore), streams and
// file transfers are never compressed.
//
// # Keeping a connection alive
//
// Each side speaks at least every KeepaliveInterval (1 s): an initiator
// that has written nothing for that long writes a FramePing, and an
// acceptor writes a FrameBeat right behind its handshake reply and then
// every interval whatever it is doing — also while it has
// stopped reading the connection for want of memory, which is how a
// sender tells a receiver that pushes back from one that is gone. An
// initiator counts a connection as up only once it has heard the acceptor
// on it (internode redials one that dies before that only after its
// backoff, and reports the lane as still dialling meanwhile). A
// side that hears nothing for a timeout of its own choosing (several
// intervals; internode's default is 5 s, and it may be configured as low
// as 2 s, so a peer must never fall silent for 2 s) may judge the
// connection dead and close it. A receiver may also close a connection
// whose frame takes longer than that timeout to arrive. An internode
// initiator also closes a connection it has written no message on for
// its idle timeout (60 s by default) once no response is due on it; for
// the acceptor that end is not an error, and the initiator dials again
// when it has something to send.
//
// # Large messages
//
// The large lane carries messages too large for one frame, and the
// initiator may not send a byte of a message's payload before the
// acceptor has room for all of it:
//
//  1. The initiator picks a stream number not in flight and writes a
//     FrameLargeBegin holding the message's header, alone; payload_len
//     says how many bytes will follow.
//  2. The acceptor answers on the back channel with a FrameGrant for that
//     stream once it has reserved room for the whole payload — at once, or
//     later when room frees; it goes on reading the connection meanwhile —
//     or with a FrameRefuse carrying a Failure (FailureOverloaded,
//     FailureTooLarge for a payload_len above its message size limit,
//     FailureExpired for a message already expired). A refused stream
//     number is free again (but see eager responses below). An initiator
//     whose connection ended before it read the answer to a message of
//     which it wrote no payload may begin it again on a later connection,
//     its header unchanged but for ttl; an acceptor that refused a
//     message with that id, verb, created_at and payload_len lately
//     refuses it again, as it did.
//  3. Once granted, the initiator writes the payload in FrameLargeMore
//     parts with that stream number, until payload_len bytes have gone;
//     the stream number is then free again. An empty payload is complete
//     when it is granted (an eager response's, at its FrameLargeBegin).
//  4. The initiator may withdraw a begun message (it expired, or was
//     cancelled) with a FrameLargeCancel carrying a Failure; the acceptor
//     forgets the stream and frees its room. A cancel for a stream the
//     acceptor does not know is ignored: it may have refused it meanwhile.
//
// The initiator may have several messages begun at once and interleave
// their parts, so that one large transfer need not wait behind another;
// it uses stream numbers in turn (1, 2, ... MaxStream, 1, ...) and ignores
// a grant or refusal for a stream it no longer has in flight. An acceptor
// accepts at most 64 begun messages per connection, and a requester at
// most 64 large responses in flight on one, counting refused ones whose
// parts it is still discarding: a FrameLargeBegin beyond that is
// malformed (the reader closes the connection; it does not refuse the
// stream), so a sender keeps no more than 64 in flight (internode: 8).
// Of those, an internode acceptor keeps at most 8 waiting for room at
// once: one begun beyond them that finds no room at once is refused
// (FailureOverloaded), so a sender that keeps more than 8 in flight may
// see that refusal where room would have come later.
//
//	initiator                                       acceptor
//	FrameLargeBegin  stream 7  | header A |  ->
//	FrameLargeBegin  stream 8  | header B |  ->
//	                                         <-  FrameGrant  stream 7
//	FrameLargeMore   stream 7  | A[0:n)   |  ->
//	                                         <-  FrameGrant  stream 8
//	FrameLargeMore   stream 7  | A[n:m)   |  ->
//	FrameLargeMore   stream 8  | B[0:k)   |  ->   ... until each is whole
//
// Because every part that arrives already has its room, an acceptor never
// waits, with a message half read, for room that only that message's
// unread parts could free.
//
// A large response takes the same steps the other way, on whichever lane
// its request came: the acceptor writes the FrameLargeBegin (a header with
// FlagResponse), FrameLargeMore and FrameLargeCancel frames on the back
// channel, and the initiator writes the FrameGrant or FrameRefuse
// (FailureExpired when nobody waits for the response any more,
// FailureTooLarge, FailureOverloaded). A requester does not make a large
// response wait for room: it grants it at once or refuses it, failing the
// request, so that a response never waits behind another. Once nobody
// waits for a granted response any more, the requester may refuse it
// after its grant (FailureExpired), and then reads and discards its
// parts as it does an eager response's (below); the acceptor, once it
// reads that refusal, withdraws the response with a FrameLargeCancel if
// parts of it are still to be written, and otherwise ignores it.
//
// Its grant, though, travels on the connection behind the requester's own
// frames, which the acceptor may have stopped reading (paused for room),
// so with CapEagerResponses agreed a large response takes no grant: the
// acceptor writes its FrameLargeMore parts right after its
// FrameLargeBegin, and the initiator writes no FrameGrant. The initiator
// takes the response, or refuses it with a FrameRefuse — at its
// FrameLargeBegin, or after some of its parts, once nobody waits for it
// (FailureExpired) — and reads and discards its parts until payload_len
// bytes in all have come or a FrameLargeCancel for it arrives: until
// then the refused stream is still in flight on the initiator's side. The
// acceptor, once it reads the refusal, withdraws the response with a
// FrameLargeCancel if parts of it are still to be written, and otherwise
// ignores it. Since a refusal may
// come after the response it refused was whole, the acceptor uses stream
// numbers in turn, as an initiator does, and ignores a refusal or a
// grant for a stream it is not sending, on any lane.
//
// A reader (package transport; this package keeps no such state) closes the
// connection on a FrameLargeBegin for a stream already in flight, a
// FrameLargeMore for a stream not in flight or not yet granted (with
// CapEagerResponses agreed, a requester takes a response's parts without
// a grant, and discards a refused one's), and a part that would carry
// more bytes than payload_len.
//
// # Message header
//
//	+-----------+--------------+----------------+----------------+---------+
//	| flags (1) | id (uvarint) | verb (uvarint) | created_at (8) | ttl (8) | ...
//	+-----------+--------------+----------------+----------------+---------+
//	                                                 only with FlagTTL ^
//	     +----------------------+---------------+-----------------------+
//	 ... | params_len (uvarint) | params (n)    | payload_len (uvarint) |
//	     +----------------------+---------------+-----------------------+
//	      \_______ only when flags has FlagParams ______/
//
//	flags        bit 0 FlagExpectsResponse: a request
//	             bit 1 FlagResponse: the answer to the request with this id
//	             bit 2 FlagFailure: a response whose payload is a failure
//	             bit 3 FlagParams: a parameter block follows
//	             bit 4 FlagTTL: a ttl follows created_at
//	             bit 5 FlagCancel: a cancel (below)
//	             bits 6 and 7 reserved, must be 0; at most one of bits 0,
//	             1 and 5; bit 2 only with bit 1
//	id           sender-chosen message ID, 0..2^64-1; a response or a
//	             cancel carries the ID of its request. A sender never
//	             reuses an ID towards the same node while a response or
//	             a cancel may still refer to it, across its lanes and
//	             connections and one-way messages included: responses
//	             and cancels are matched by ID alone (internode numbers
//	             its messages up from a random start)
//	verb         what the message means, 0..2^32-1, chosen by the
//	             application; a response carries its request's verb,
//	             which readers do not check
//	created_at   sender's clock at creation, signed Unix nanoseconds: for
//	             tracing and latency figures only, never for expiry
//	ttl          big-endian u64, 1..2^62 (MaxTTL): nanoseconds the message
//	             stays worth delivering, counted from when its frame is
//	             written; absent means it never expires
//	params_len   1..4096 (MaxParamsSize)
//	params       key/value pairs filling params_len exactly (see
//	             Parameters); a reader checks them as it decodes the
//	             header, and a block that does not parse makes the
//	             header malformed
//	payload_len  payload bytes that follow the header, 0..2^32-1 and at most
//	             the reader's message size limit (internode: 32 MiB by
//	             default, Config.Memory.MaxMessageSize); 0 on a cancel.
//	             In a batch frame a message above that limit (its
//	             sender's limit is larger) is refused alone: the reader
//	             drops it, answers a request with a FailureTooLarge
//	             response, fails the call a response answers as too
//	             large, and reads the rest of the frame; a payload that
//	             overruns its frame is malformed
//
// A header is at most MaxHeaderSize (4135) bytes.
//
// Expiry survives clock skew: it travels as the time left, not as a
// moment. A writer sets ttl as it writes the frame (SetTTL rewrites it in
// place), to its deadline minus its clock then, and does not write a
// message whose deadline has passed; a large message's ttl is set as its
// FrameLargeBegin is written. The receiver's deadline is its own clock
// when the frame arrived plus ttl (Header.Deadline): later than the
// sender's by the time the frame spent on the wire, whatever either
// clock says. A frame arrives when it reaches the receiver's socket, not
// when the receiver reads it: a receiver that stops reading for a while
// should date the frames that wait in its receive queue meanwhile by
// when it saw them there (internode samples the queue's depth, FIONREAD,
// while its reader waits for capacity), or they reach their handlers
// with their whole ttl however long they waited. A receiver drops a message whose deadline passed before its
// handler started, and a request that expired gets no response; its
// sender's own deadline ends it. A response carries what is left of its
// request's deadline as its ttl, and none when its request had none; its
// requester waits by its own deadline, and reads a response with a ttl or
// without one alike (internode does not drop a response for its ttl).
//
// A cancel (FlagCancel, no payload, the ID and verb of a request its
// sender wrote earlier; the receiver matches it by ID alone) says the
// requester no longer waits for that request's answer. It travels in a
// FrameBatch from the initiator of an urgent or small lane, never as a
// large message (malformed), and internode sends it on the urgent lane,
// so it may overtake its request, which travelled on another. The
// receiver stops the request: if its handler runs, its context is
// cancelled and no answer is sent; if it has not started, it never does;
// if it has not arrived, the receiver may remember the cancel for a while
// (internode: the last 1024 per peer, while the peer has a connection to
// it) and drop the request when it comes. A cancel for a request the
// receiver has answered, or never sees, is ignored. It gets no response.
//
// A receiver whose inbound room is full stops reading until room frees,
// and the room may be held by the very requests a cancel would stop. So
// it reads a batch frame of at most 4 KiB of payload before it has room
// for it: one that holds cancels alone needs no room and acts at once. On
// an urgent lane, one that holds more may be taken beyond the limits
// (internode: one at a time per peer, 16 node-wide), so it reads on;
// otherwise the frame's cancels act before it waits for its room, and
// nothing behind it is read meanwhile. A cancel in a larger frame waits
// with it. A sender that wants its cancels to reach a full receiver puts
// them in frames of their own of at most 4 KiB, ahead of its other
// frames, as internode does. internode gives a frame's room back once
// the last of its messages is done, so a cancel that stops one request of
// a frame frees that room only with the others.
//
// # Parameters
//
// The parameter block carries key/value pairs such as W3C trace context
// ("traceparent", "tracestate"); AppendParam writes a pair, Param and
// RangeParams read them. Keys are short ASCII names; a key may repeat and
// the first one counts. The pairs must fill the block exactly: a reader
// decoding a header parses its block, and a length that runs past the
// block's end, or a block that ends inside a length, makes the header
// (and so its batch) malformed. Nothing else is checked: a key or value
// may be any bytes, empty too.
//
//	+-------------------+-----+---------------------+-------+------
//	| key_len (uvarint) | key | value_len (uvarint) | value | next pair ...
//	+-------------------+-----+---------------------+-------+------
//
// # Failure payload
//
// A response with FlagFailure carries a Failure as its payload, filling it
// exactly:
//
//	+----------+-----------------------+---------------+
//	| code (1) | message_len (uvarint) | message (n)   |
//	+----------+-----------------------+---------------+
//
//	code     a FailureCode: 0 FailureUnknown, 1 FailureUnknownVerb,
//	         2 FailureHandlerError, 3 FailureExpired, 4 FailureOverloaded,
//	         5 FailureTooLarge, 6 FailureCanceled, and in a file
//	         transfer's result 7 FailureCorrupt (the bytes did not match
//	         the checksum) and 8 FailureIncomplete (fewer bytes arrived,
//	         or the sender went silent); a reader takes a code it does
//	         not know as FailureUnknown
//	message  human-readable detail, 0..1024 bytes (MaxFailureMessage)
//
// # Streams
//
// A stream connection (lane 3) carries a session of byte streams. After
// the handshake both sides speak smux protocol version 2
// (https://github.com/xtaci/smux#specification): smux's own 8-byte frame
// headers, whose integers are little-endian unlike the rest of this
// format, carry any number of streams, each with its own flow-control
// window. The initiator of the connection is the smux client and the only
// side that opens streams; a node that wants to open streams to a peer
// dials a stream connection of its own. Each side sends smux's NOP every
// KeepaliveInterval (1 s), and may close a session on which it heard
// nothing for a timeout of its own choosing, as a lane's connection
// (see Keeping a connection alive; internode's is its Keepalive, 2 s at
// least, checked that often, so it closes a silent session within twice
// that).
//
// A stream connection of its own (lane 5) carries exactly one stream,
// with no smux framing: after the handshake its bytes are those of one
// smux stream's below — the opening, then chunks each way — and TCP's
// FIN follows each side's end marker. A side that closes such a
// connection before it has read the other's end marker first sends its
// FIN and reads until the other's (or a second passes), so that closing
// with bytes unread does not reset the connection and discard what it
// had written.
//
// Inside each smux stream the opener writes the verb and writes nothing
// more until the acceptor has answered with one status byte:
//
//	opener                                 acceptor
//	+----------------+
//	| verb (uvarint) |  ------------->
//	+----------------+
//	                    <-------------     +------------+
//	                                       | status (1) |
//	                                       +------------+
//
//	verb    what the stream is for, 0..2^32-1, chosen by the application;
//	        at most MaxStreamOpenSize (5) bytes
//	status  0 StreamAccepted, or the FailureCode refusing the stream:
//	        1 FailureUnknownVerb (no handler for the verb), 4
//	        FailureOverloaded (too many streams open, or opening, with
//	        that peer); codes this version does not define are passed
//	        up as they are
//
// The acceptor sends the status byte only once it has read the verb, a
// refusal too: smux before v1.5.58 (which earlier builds of internode use)
// drops frames for a stream it is opening that arrive before its SYN is
// written, so a status sent on the SYN alone could be lost. A refusing
// acceptor closes the stream after the status byte, and so does an
// acceptor that reads a malformed verb (without a status byte). An
// acceptor that has more streams waiting for their refusal than smux holds
// unaccepted (1024) closes the next without one. Both sides bound the
// opening with their handshake timeout.
//
// Once the stream is accepted, each side writes its data as chunks, each a
// 4-byte big-endian length (StreamChunkHeaderSize) followed by that many
// bytes, 1 to MaxStreamChunk (65536). A chunk of length 0 is the end
// marker: its writer has no more data for that direction (a half-close)
// and writes nothing after it; the other direction goes on until its own
// end marker. A direction whose stream ends before its end marker (closed
// or reset) was cut short, and its reader reports an error, not a clean
// end. The two directions are independent: either side may write
// while the other does.
//
//	+------------+------------+------------+------------+-----+-------------+
//	| length (4) | data (len) | length (4) | data (len) | ... | 00 00 00 00 |
//	+------------+------------+------------+------------+-----+-------------+
//	 \_________ chunk _______/                                  end marker
//
// Chunk boundaries mean nothing: a writer cuts its data where it likes
// (internode writes each Write as chunks of at most MaxStreamChunk) and a
// reader must not depend on where. A reader refuses a length above
// MaxStreamChunk from the header alone (ParseStreamChunkHeader) and closes
// the stream, not the session. A side closes the smux stream once it has
// written its end marker and needs nothing more from the other; smux's own
// half-close (its FIN) is not used to end a direction's data, because
// smux before v1.5.58 (which earlier builds of internode use) drops data
// a reader had received but not yet read once both sides have closed a
// stream.
//
// The opener writes AppendStreamOpen and the acceptor reads it with
// ReadStreamOpen; the acceptor answers with AppendStreamAccept or
// AppendStreamRefuse, which the opener reads with ParseStreamStatus; each
// side frames its data with AppendStreamChunkHeader and reads the other's
// with ParseStreamChunkHeader.
//
// For example, a stream opened with verb 20 on which the opener sends
// "hello" and the acceptor "ok" carries these bytes:
//
//	opener     14    00 00 00 05  68 65 6c 6c 6f  00 00 00 00
//	           verb  length 5     "hello"         end marker
//
//	acceptor   00      00 00 00 02  6f 6b  00 00 00 00
//	           status  length 2     "ok"   end marker
//
// # File transfer
//
// A file-transfer connection (lane 4) carries one file. After the
// handshake the initiator sends a FileHeader; the acceptor answers with a
// FileResult (empty: ready; else the failure); then the initiator sends
// the file's Length raw bytes, unframed, so that the kernel can move them
// with sendfile and splice, and then a 4-byte trailer, the CRC32C of those
// bytes (computed while they travel, so it comes after them), unless the
// header's flags have FileUnchecked; the acceptor ends with a second
// FileResult, empty when it received every byte, they match the trailer
// (when there is one) and its handler accepted them. An acceptor that fails
// the transfer before its bytes end answers then, closes its sending side
// and reads on for a second (64 MiB at most) before it closes, so that the
// initiator reads the failure rather than a reset; the initiator reads
// while it sends, and stops sending once it reads a failure (on a
// connection without buffers the failure would otherwise wait for the
// initiator's last byte, as the initiator's bytes wait for the acceptor's
// reads). The acceptor answers the header at once (the initiator waits
// its handshake timeout for it) and cuts off an initiator that sends
// nothing for its keepalive timeout (at least 2 s): a rate-limited
// initiator sends a little at a time rather than a burst and a long pause.
// An initiator whose bytes end early closes its sending side and reads the
// acceptor's failure.
//
//	+----------------+-------------------+-----------------+------------------+
//	| header_len (2) | verb (uvarint)    | id (uvarint)    | created_at (8)   | ...
//	+----------------+-------------------+-----------------+------------------+
//	     +---------------+------------------+-------------------------+
//	 ... | ttl (uvarint) | length (uvarint) | flags (uvarint, if any) |
//	     +---------------+------------------+-------------------------+
//
//	then: length raw bytes | crc32c (4), unless flags has FileUnchecked
//
//	header_len  bytes of the header after header_len, which they must
//	            fill exactly: at most 62 (MaxFileHeaderSize, 64, counts
//	            header_len too)
//	verb        what the transfer is for, 0..2^32-1, chosen by the
//	            application
//	id          sender-chosen transfer ID, 0..2^64-1
//	created_at  sender's clock at creation, signed Unix nanoseconds, as
//	            in a message header
//	ttl         nanoseconds the transfer stays worth finishing, counted
//	            from when the header is written, 0..2^62 (MaxTTL): unlike
//	            a message header's, a uvarint that is always there, and 0
//	            means it never expires
//	length      bytes of the file, 0..2^64-1
//	flags       only when the file connection's handshake agreed
//	            CapFileFlags (bit 2), and then optional: a header that
//	            ends after length has flags 0, and an initiator leaves
//	            0 out. Bit 0 FileUnchecked: no crc32c follows the bytes,
//	            and the acceptor does not verify them (for files that
//	            carry checksums of their own, which the application
//	            checks). Other bits are malformed, and so are flags
//	            without CapFileFlags agreed
//	crc32c      CRC32C of the length raw bytes, big-endian
//
// A FileResult is result_len (2) followed by that many bytes of Failure
// payload; a zero result_len means success. Both are bounded
// (MaxFileHeaderSize, MaxFailureMessage) before anything is allocated.
//
// # Versioning
//
// The initiator offers a range of versions [min_ver, max_ver]; the acceptor
// picks the highest version in both that range and its own (Negotiate) or
// refuses with UnsupportedVersion; the initiator checks that the Reply's
// version lies in the range it offered. Everything after the handshake is
// read in the chosen version. This package speaks version 3. Version 2
// carried a message's expiry as a moment on the sender's clock (created_at
// plus a ttl), which a skewed clock moved, and sent each response on the
// responder's own connection to the requester; version 1 had no back
// channel and sent large payloads without a grant. Both are retired and refused.
// Version 0 is reserved (it is how a Reply says "none").
//
// The Hello and Reply layouts are the same in every version, because a
// node must read a Hello offering versions it does not speak in order to
// refuse it. New handshake information travels as capability bits: a node
// ignores bits it does not know, and the acceptor answers with the bits
// both sides have (an initiator takes only those it offered). A
// capability adds to a version what both sides may use once they agreed
// it, so a node of the same version without it interoperates as before:
// compressed batches are such an addition to version 3, not a new
// version. Version 3 defines bit 0, CapBatchS2 (see Compressed batches),
// bit 1, CapEagerResponses (see Large messages), bit 2, CapFileFlags
// (see File transfer; offered on file-transfer connections), and bit 3,
// CapAcceptorID (see Handshake); bits 4 to 31 are reserved and offered as
// 0.
//
// Reserved values: frame kinds 9..255 and message flag bits 6 and 7 are
// malformed in version 3 (a new one needs a new version or a
// capability), and kind 8 unless CapBatchS2 was agreed; failure codes
// 9..255 (in a Failure or a stream's status byte) and refuse reasons
// 8..255 are passed up as they are and read as FailureUnknown and as a
// refusal (Refused), so later versions can add reasons.
//
// Part of the wire format, and pinned by tests, are: Magic, Version3,
// CapBatchS2, CapEagerResponses, CapFileFlags, CapAcceptorID, FileUnchecked,
// MaxBatchS2Prefix,
// MaxHandshakeSize, MaxNameLength, FrameHeaderSize, MaxStream,
// MaxBatchMessages,
// KeepaliveInterval,
// DefaultMaxFramePayload (as the largest frame a writer sends), the values
// of FrameKind, MessageFlags, FailureCode and RefuseReason, MaxParamsSize,
// MaxFailureMessage, MaxTTL (2^62), for streams StreamAccepted,
// StreamChunkHeaderSize and MaxStreamChunk, and for file transfers
// MaxFileHeaderSize and FileTrailerSize. MinVersion and MaxVersion say
// what this build speaks; MaxHeaderSize and MaxStreamOpenSize are derived
// from the rest. Changing any of them changes the format.
//
// # Hostile input
//
// Every decoder checks each length against its bound and against the bytes
// present before it allocates or slices, and never panics, whatever the
// input; each is fuzzed. Any decoder error (ErrTruncated in a complete
// frame, ErrMalformed, ErrChecksum, ErrBadMagic, ErrFrameTooLarge,
// ErrMessageTooLarge, ErrHandshakeTooLarge; test with errors.Is) means the
// peer does not speak this format or the bytes were damaged: the reader
// must close the connection (inside a stream session, the stream), with
// the error as the logged reason, and must not try to resynchronise. The
// encoders, in turn, refuse to write what the decoders would reject:
// AppendHello returns an error, and AppendHeader, AppendFrameHeader,
// AppendReply, AppendBatchS2 (an empty batch), AppendStreamChunkHeader
// and AppendStreamRefuse panic on such a programming error.
// AppendFileHeader writes the flags it is given: keeping to the defined
// ones, and to none without CapFileFlags agreed, is its caller's duty.
// The one other bound they leave to their caller is the frame limit,
// which each reader chooses: AppendFrameHeader frames any payload up to
// 2^32-1 bytes, and keeping frames within DefaultMaxFramePayload is the
// writer's duty.
//
// # Using the package
//
// The initiator of a connection:
//
//  1. Sets a deadline on the connection, writes AppendHello, then reads the
//     answer with ReadHandshake and DecodeReply.
//  2. Checks that Reply.Reason is Accepted and Reply.Version lies in the
//     range it offered, and, if it offered CapAcceptorID and the Reply
//     carries it, that Reply.Message is the node ID it meant to reach;
//     otherwise closes the connection.
//  3. On the urgent and small lanes, encodes each message as AppendHeader
//     followed by its payload and collects whole messages into a batch no
//     larger than a frame. On the large lane, writes a FrameLargeBegin with
//     the header alone and, once the back channel brings its FrameGrant,
//     the payload in FrameLargeMore parts.
//  4. Frames each batch or part with AppendFrameHeader over the parts as
//     they are, and writes header and parts in one vectored write
//     (net.Buffers), so that payloads are not copied; writes a FramePing
//     after a KeepaliveInterval with nothing else to write. If it offered
//     CapBatchS2 and the Reply carries it, it may compress a batch with
//     AppendBatchS2 and frame the block as a FrameBatchS2.
//  5. Reads the back channel all along: FrameBeat; responses, in
//     FrameBatch frames and as large messages, for which it writes a
//     FrameGrant or FrameRefuse on the connection as soon as the
//     FrameLargeBegin arrives (with CapEagerResponses agreed, no grant,
//     and the parts of a refused one are read and discarded); and on the
//     large lane the FrameGrant and FrameRefuse of its own large messages.
//  6. When the back channel ends (the stream's end, or TLS close_notify),
//     stops writing and closes the connection: an acceptor that shuts down
//     ends its side first and reads what was written until then (step 7
//     below); what the initiator has not written goes on another
//     connection, or to another node.
//
// The acceptor:
//
//  1. Sets a deadline, reads ReadHandshake and DecodeHello, picks a version
//     with Negotiate, checks cluster, node and lane, and writes AppendReply
//     (with the version, the offered capabilities it has and, with
//     CapAcceptorID among them, its node ID as the message; or a
//     RefuseReason and version 0, then closes).
//  2. Writes a FrameBeat right behind an accepting reply (message lanes:
//     not on a stream or file connection), then every KeepaliveInterval
//     until the connection ends.
//  3. Reads FrameHeaderSize bytes and calls ParseFrameHeader with its frame
//     limit, checks the kind is one its lane's initiator may send, then
//     reads Length payload bytes into a buffer of that size and calls
//     Verify. For a FrameBatchS2 (only if the handshake agreed
//     CapBatchS2) it takes the batch's length from BatchS2Len, refuses a
//     Length above MaxBatchS2Block of it, allocates that, and decodes it
//     with DecodeBatchS2; the batch is then read as a FrameBatch's
//     payload.
//  4. For a FrameBatch, calls DecodeHeader with its frame limit at the
//     start of the payload, takes PayloadLength bytes after the header
//     as the message payload, and repeats until the frame is used up; a
//     message that runs past the frame's end is malformed. A message
//     above its message size limit is refused alone (see Message header),
//     not the connection: with that limit, DecodeHeader would return
//     ErrMessageTooLarge, which closes it. For a
//     FrameLargeBegin it decodes the header (which must fill the payload),
//     then grants or refuses the stream on the back channel, and gathers
//     the granted stream's parts.
//  5. Writes each request's response back on the connection, and the
//     parts of a large response once the initiator's FrameGrant for it
//     arrives, or right after its FrameLargeBegin if the handshake agreed
//     CapEagerResponses.
//  6. Closes the connection on any error from steps 1 to 5.
//  7. To shut down without losing what the initiator has written, writes
//     what it owes, then closes its sending side (shutdown(SHUT_WR), or
//     TLS close_notify), writes nothing more, and reads and acts on what
//     arrives until the initiator closes the connection (internode waits
//     3 KeepaliveIntervals at most).
//
// The examples show a batch frame being written and read.
package wire
