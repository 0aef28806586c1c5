package transport

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"

	"github.com/internode/internode/internal/bufpool"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// Compression says whether a lane's batch frames are compressed (S2, see
// wire.FrameBatchS2). Compression is frame-level: a whole batch frame, its
// messages' headers and payloads together, is compressed as one block,
// so small messages that repeat field names across a batch compress well.
// Large messages (above LaneConfig.LargeThreshold, sent in parts),
// streams and SendFile are never compressed: bulk data is usually
// compressed already (SSTables, snapshots), and files go by sendfile,
// which compression would stop.
//
// Both ends of a connection must allow it: each offers it in the
// handshake unless its mode for the lane is CompressionOff, and each
// compresses what it writes by its own mode. A peer that does not offer it
// (an older build, or CompressionOff) gets uncompressed frames.
//
// S2 (github.com/klauspost/compress/s2), not LZ4: the module was already
// in internode's module graph; an S2 block starts with its decoded
// length, so a reader bounds a block before it allocates; every Snappy
// block is an S2 block, so a peer in another language can write frames
// with any Snappy library; and it has assembly for amd64 and arm64, with
// a fast path that gives up early on incompressible input.
type Compression uint8

const (
	// CompressionAuto (the default) compresses on connections whose peer
	// is not on a loopback address (a peer on the same host is reached at
	// memory speed, where compressing only costs CPU), and sends frames
	// uncompressed for a while after one that did not shrink by at least
	// a tenth (incompressible payloads: encrypted, already compressed),
	// trying again after 16, 32, ... up to 1024 frames.
	CompressionAuto Compression = iota
	// CompressionOff neither compresses nor offers to read compressed
	// frames: the lane's connections carry plain frames both ways.
	CompressionOff
	// CompressionOn compresses every batch frame of at least 256 bytes
	// that shrinks, whatever the peer's address.
	CompressionOn
)

func (c Compression) String() string {
	switch c {
	case CompressionAuto:
		return "auto"
	case CompressionOff:
		return "off"
	case CompressionOn:
		return "on"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// compressPolicy decides, frame by frame, whether a writer compresses.
// It is pure: the writer tells it each frame's size and what compressing
// it gave.
type compressPolicy struct {
	auto bool // back off after frames that do not shrink
	// skip is how many frames to send as they are before trying again,
	// and backoff what skip becomes after the next miss.
	skip, backoff int
}

const (
	minCompressFrame  = 256  // bytes: smaller frames are sent as they are
	firstCompressSkip = 16   // frames skipped after a first miss
	maxCompressSkip   = 1024 // frames skipped at most between tries
)

// try reports whether to compress a frame of n bytes.
func (p *compressPolicy) try(n int) bool {
	if n < minCompressFrame {
		return false
	}
	if p.skip > 0 {
		p.skip--
		return false
	}
	return true
}

// result records that a frame of in bytes compressed to out, and reports
// whether to send it compressed: when it shrank by a tenth in auto mode,
// at all otherwise.
func (p *compressPolicy) result(in, out int) bool {
	if !p.auto {
		return out < in
	}
	if out <= in-in/10 {
		p.backoff = 0
		return true
	}
	p.backoff = min(max(2*p.backoff, firstCompressSkip), maxCompressSkip)
	p.skip = p.backoff
	return false
}

// compressor compresses the batch frames of one connection's writer.
// Owned by the writer goroutine.
type compressor struct {
	policy   compressPolicy
	counters *connCounters
	// held are the pooled buffers of the compressed frames gathered for
	// the next write; the frameWriter gives them back once it is written.
	held []*bytebufferpool.ByteBuffer
	// gathered says what became of each batch frame gathered for the
	// next write. A frame reaches counters only if the write took it
	// whole, as its messages do (writeBatch): a frame a failed write did
	// not take whole was not sent.
	gathered []gatheredFrame
}

// gatheredFrame is one batch frame gathered for the next write.
type gatheredFrame struct {
	frame   int  // its place among the write's frames (frameWriter.frameEnds)
	in, out int  // its bytes before and after compression; out 0: sent as it was
	tried   bool // sent as it was after a try that did not shrink it enough
}

// newCompressor returns the compressor for a connection of lane whose
// handshake agreed caps, to remote, or nil when its frames go as they
// are.
func (t *Transport) newCompressor(lane routing.Lane, caps wire.Capabilities, remote net.Addr, counters *connCounters) *compressor {
	if caps&wire.CapBatchS2 == 0 || !lane.Valid() {
		return nil
	}
	switch t.cfg.Lanes.Compression[lane] {
	case CompressionOn:
		return &compressor{counters: counters}
	case CompressionAuto:
		if !isLoopback(remote) {
			return &compressor{policy: compressPolicy{auto: true}, counters: counters}
		}
	}
	return nil
}

// isLoopback reports whether addr is a loopback IP address, or not an IP
// address at all (an in-process pipe).
func isLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case nil:
		return true
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return true
	}
	ip := net.ParseIP(host)
	return ip == nil || ip.IsLoopback()
}

// offers returns the capabilities this node offers, and accepts, on a
// connection of kind (a lane, laneStreams, laneFile or laneOwnStream): on
// every kind, the acceptor's node ID in its reply, which the initiator
// checks; on a lane, large responses without grants, and compressed
// batches unless the lane's compression is off; on a file connection,
// flags in the file header (transfers without a checksum, Unchecked).
func (t *Transport) offers(kind uint8) wire.Capabilities {
	if kind == laneFile {
		return wire.CapFileFlags | wire.CapAcceptorID
	}
	if kind >= routing.NumLanes {
		return wire.CapAcceptorID
	}
	caps := wire.CapEagerResponses | wire.CapAcceptorID
	if t.cfg.Lanes.Compression[kind] != CompressionOff {
		caps |= wire.CapBatchS2
	}
	return caps
}

// addBatch appends a batch frame over body: compressed (FrameBatchS2)
// when the connection's compressor says so, else as it is (FrameBatch).
// A compressed body lives in a pooled buffer that flush gives back.
func (fw *frameWriter) addBatch(body []byte) {
	if c := fw.comp; c != nil {
		if block := c.compress(len(fw.frameEnds), body); block != nil {
			fw.add(wire.FrameBatchS2, 0, block)
			return
		}
	}
	fw.add(wire.FrameBatch, 0, body)
}

// compress returns body, the write's frame-th frame, as one S2 block in
// a pooled buffer it holds, or nil when the policy says to send body as
// it is.
func (c *compressor) compress(frame int, body []byte) []byte {
	if !c.policy.try(len(body)) {
		c.gathered = append(c.gathered, gatheredFrame{frame: frame})
		return nil
	}
	buf := bytebufferpool.Get()
	buf.B = wire.AppendBatchS2(buf.B[:0], body)
	block := buf.B
	if !c.policy.result(len(body), len(block)) {
		c.gathered = append(c.gathered, gatheredFrame{frame: frame, tried: true})
		bytebufferpool.Put(buf)
		return nil
	}
	c.held = append(c.held, buf)
	c.gathered = append(c.gathered, gatheredFrame{frame: frame, in: len(body), out: len(block)})
	return block
}

// releaseHeld gives back the buffers of the frames just written, and
// counts the first whole of them: those the write took whole.
func (c *compressor) releaseHeld(whole int) {
	for i, buf := range c.held {
		bytebufferpool.Put(buf)
		c.held[i] = nil
	}
	c.held = c.held[:0]
	var frames, in, out, skipped, misses uint64
	for _, f := range c.gathered {
		switch {
		case f.frame >= whole:
		case f.out > 0:
			frames++
			in += uint64(f.in)
			out += uint64(f.out)
		case f.tried:
			misses++
			fallthrough
		default:
			skipped++
		}
	}
	c.gathered = c.gathered[:0]
	add := func(counter *atomic.Uint64, n uint64) {
		if n > 0 {
			counter.Add(n)
		}
	}
	add(&c.counters.compressedFrames, frames)
	add(&c.counters.compressIn, in)
	add(&c.counters.compressOut, out)
	add(&c.counters.compressSkipped, skipped)
	add(&c.counters.compressMisses, misses)
}

// errCompressedBatch wraps what is wrong with a compressed batch frame.
func errCompressedBatch(err error) error {
	if errors.Is(err, wire.ErrTruncated) {
		// Within a frame whose length is known: the block is cut.
		return fmt.Errorf("%w: compressed batch: %w", wire.ErrMalformed, err)
	}
	return err
}

// checkBatchS2Block refuses a compressed batch frame whose block (fh's
// payload) is longer than any block that decodes to n bytes: malformed,
// as the decoder would find, but known from the header, so no room is
// taken for it and nothing allocated (the rest is read only through the
// checksum, refusedBatchS2) — a peer could otherwise make the reader hold
// up to a frame-limit block beyond the limits for a batch of a few bytes.
func checkBatchS2Block(fh wire.FrameHeader, n int) error {
	if int64(fh.Length) > int64(wire.MaxBatchS2Block(n)) {
		return fmt.Errorf("%w: compressed batch of %d bytes in a block of %d", wire.ErrMalformed, n, fh.Length)
	}
	return nil
}

// peekBatchS2Len reads a compressed batch's length from the first bytes
// of its block, without consuming them, and checks the block's length
// against it.
func peekBatchS2Len(src *bufio.Reader, fh wire.FrameHeader, maxFrame int) (int, error) {
	prefix, err := src.Peek(min(int(fh.Length), wire.MaxBatchS2Prefix))
	if err != nil {
		// As readFramePayload: only the peer's end of the stream cuts the
		// frame; a deadline, a reset or a close here is what it is.
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("frame payload: %w", wire.ErrTruncated)
		}
		return 0, err
	}
	n, err := wire.BatchS2Len(prefix, uint32(maxFrame))
	if err != nil {
		return 0, errCompressedBatch(err)
	}
	return n, checkBatchS2Block(fh, n)
}

// refusedBatchS2 returns why a compressed batch frame refused from its
// first bytes (peekBatchS2Len) is refused, once the rest of its payload,
// all of it still unread in r, has been read and checked against the
// frame's checksum a piece at a time, none of it held. The checksum
// covers plain_len too: a flipped bit there — plain_len running on past
// the frame limit, or cut short so that the block is too long for it —
// is damage, a checksum mismatch (BadInputChecksum) as anywhere else in
// a frame, not a peer that does not speak the format. A payload that
// does not all come (the peer's end, silence, a close here) leaves the
// refusal as it is.
func refusedBatchS2(r io.Reader, fh wire.FrameHeader, refusal error) error {
	var piece [readBufferSize]byte
	crc := fh.HeaderChecksum()
	for left := int(fh.Length); left > 0; {
		n, err := io.ReadFull(r, piece[:min(left, len(piece))])
		if err != nil {
			return refusal
		}
		crc = crc32.Update(crc, castagnoli, piece[:n])
		left -= n
	}
	if crc != fh.Checksum {
		return wire.ErrChecksum
	}
	return refusal
}

// isRefusal reports whether err from peekBatchS2Len refuses the frame
// for what its first bytes say (bad input), rather than being a read that
// failed.
func isRefusal(err error) bool {
	return errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrFrameTooLarge)
}

// rejectedS2Frames is how many compressed batch frames of the largest
// size those OverloadReject rejects may hold at once, node-wide
// (rejectedS2Budget).
const rejectedS2Frames = 4

// rejectedS2Budget returns the bytes that the compressed batch frames
// OverloadReject rejects may hold at once, node-wide, for frames of at
// most maxFrame bytes: the blocks and decoded batches of
// rejectedS2Frames of the largest (2 MiB with the default 256 KiB frame
// limit). Unlike a plain frame (rejectBatch) such a frame cannot be read
// through a small buffer — its block is decoded whole, into a buffer of
// its batch's length — and it comes when the inbound limits are full, so
// it is bounded apart from them: without a bound, peers trickling such
// frames on every connection held about 512 KiB each, some 2 GiB at the
// default Security.MaxConns. The bound is fixed, not a part of the
// inbound limits, which are full whenever it is used and which SetLimits
// changes: a rejected frame holds its share only while it arrives and
// its messages are answered, so a few at a time refuse a sender at the
// pace its bytes come, and smaller frames take smaller shares.
func rejectedS2Budget(maxFrame int) int64 {
	return rejectedS2Frames * 2 * int64(bufpool.Cap(maxFrame))
}

// readBatchS2 reads a compressed batch frame. Capacity for the
// decompressed batch is taken (or waited for) before anything is
// allocated — its length is read from the block's first bytes and checked
// against the frame limit — as for a plain frame of that size. The
// compressed block, held while it arrives and is decoded, is counted
// beyond the limits (at most one frame per connection) rather than
// waited for: a batch that fills the limit could otherwise never be
// read. A frame that OverloadReject rejects holds the same while its
// block is read, and its decompressed batch, outside the limits, only
// once the block has come, while its messages are answered; before it
// holds either it takes a share of the node's room for such frames
// (rejectedS2Budget), both buffers' worth, and waits for it, reading
// paused, while other rejected frames hold that room. Each holder gives
// its share back once its frame is answered, or its connection ends:
// Keepalive bounds the reading of each frame, so a wait ends.
func (ic *inConn) readBatchS2(fh wire.FrameHeader) error {
	n, err := peekBatchS2Len(ic.src, fh, ic.t.maxFrame)
	for err != nil && ic.deadlineEarly(err, ic.frameStart) {
		// The frame's whole Keepalive, as frameSource gives its reads.
		n, err = peekBatchS2Len(ic.src, fh, ic.t.maxFrame)
	}
	if isRefusal(err) {
		return refusedBatchS2(frameSource{ic}, fh, err)
	}
	if err != nil {
		return err
	}
	return ic.readAdmitted(n, func(buf []byte) error {
		return ic.readBlockS2(fh, func() []byte { return buf })
	}, func(arrived int64) error {
		share := int64(bufpool.Cap(int(fh.Length)) + bufpool.Cap(n))
		room := ic.t.rejectedS2.Root()
		if _, err := ic.waitRoom(room, share, nil, nil, nil); err != nil {
			return err
		}
		defer room.Release(share)
		var buf []byte
		err := ic.readBlockS2(fh, func() []byte {
			buf = bufpool.Get(n)
			return buf
		})
		if err != nil {
			if buf != nil {
				bufpool.Put(buf)
			}
			return err
		}
		return ic.handleBatch(buf, 0, arrived, true, false, false)
	})
}

// readBlockS2 reads the compressed block of the frame fh heads, counted
// beyond the limits while it is held, and decodes it into the buffer
// into returns once the block has been read and checked.
func (ic *inConn) readBlockS2(fh wire.FrameHeader, into func() []byte) error {
	blockHeld := int64(bufpool.Cap(int(fh.Length)))
	ic.account.Overdraw(blockHeld)
	block := bufpool.Get(int(fh.Length))
	err := ic.readPayload(fh, block)
	if err == nil {
		ic.measureRecvQueue(int(fh.Length), false)
		err = wire.DecodeBatchS2(into(), block)
	}
	bufpool.Put(block)
	ic.account.Release(blockHeld)
	if err == nil {
		ic.counters.compressedFrames.Add(1)
	}
	return err
}

// readBatchS2 reads a compressed batch of responses; like readBatch, it
// counts what it holds without waiting for capacity.
func (rx *responseReader) readBatchS2(fh wire.FrameHeader) error {
	c := rx.c
	// The batch's length first, and the block's against it, before the
	// block is held (checkBatchS2Block).
	n, err := peekBatchS2Len(rx.src, fh, c.t.maxFrame)
	if isRefusal(err) {
		return refusedBatchS2(rx.src, fh, err)
	}
	if err != nil {
		return err
	}
	blockHeld := int64(bufpool.Cap(int(fh.Length)))
	c.peer.inAccount.Overdraw(blockHeld)
	block := bufpool.Get(int(fh.Length))
	err = rx.readPayload(fh, block)
	if err != nil {
		bufpool.Put(block)
		c.peer.inAccount.Release(blockHeld)
		return err
	}
	held := int64(bufpool.Cap(n))
	c.peer.inAccount.Overdraw(held)
	defer c.peer.inAccount.Release(held)
	buf := bufpool.Get(n)
	defer bufpool.Put(buf)
	err = wire.DecodeBatchS2(buf, block)
	bufpool.Put(block)
	c.peer.inAccount.Release(blockHeld)
	if err != nil {
		return err
	}
	c.peer.inbound[c.lane].compressedFrames.Add(1)
	return rx.handleBatch(buf)
}
