package transport

import (
	"net"
	"time"

	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/wire"
)

// maxActiveLarge is how many large messages one connection interleaves. A
// receiver accepts up to maxInboundStreams at once.
const (
	maxActiveLarge    = 8
	maxInboundStreams = 64
)

// largeSend is one large message being written in parts.
type largeSend struct {
	id         uint64
	expiresAt  int64
	isRequest  bool
	isResponse bool
	header     []byte // the encoded message header
	payload    []byte // the caller's buffer, written in place
	sent       int    // payload bytes written so far
	begun      bool   // the FrameLargeBegin part is written
	stream     uint32
	size       int         // bytes queued
	grant      limit.Grant // capacity held
}

// largeWriter interleaves the parts of up to maxActiveLarge messages, one
// frame of each per write, so that a huge message never holds a smaller one
// behind it for its whole transfer. Owned by the writer goroutine.
type largeWriter struct {
	waiting    []largeSend
	active     []largeSend
	nextStream uint32
}

func (w *largeWriter) idle() bool { return len(w.active) == 0 && len(w.waiting) == 0 }

// admit moves newly queued messages in, copying their small headers out of
// the pooled batch buffer so it can be recycled at once.
func (w *largeWriter) admit(c *outConn) {
	for {
		b, _ := c.queue.take()
		if b == nil {
			return
		}
		for i := range b.items {
			it := &b.items[i]
			w.waiting = append(w.waiting, largeSend{
				id: it.id, expiresAt: it.expiresAt, isRequest: it.isRequest, isResponse: it.isResponse,
				header:  append([]byte(nil), b.buf.B[it.start:it.end]...),
				payload: it.payload, size: it.size(), grant: it.grant,
			})
		}
		// Each message now holds its own capacity and is forgotten by the
		// queue one by one (finish), not with the segment.
		b.bytes = 0
		clear(b.items)
		c.queue.release(b)
	}
}

// step writes one round: a frame of every active message.
func (w *largeWriter) step(c *outConn) error {
	w.admit(c)
	now := time.Now().UnixNano()
	for len(w.active) < maxActiveLarge && len(w.waiting) > 0 {
		ls := w.waiting[0]
		w.waiting = w.waiting[1:]
		if ls.expiresAt != 0 && now >= ls.expiresAt {
			w.finish(c, &ls, ErrExpired)
			continue
		}
		w.nextStream = w.nextStream%wire.MaxStream + 1
		ls.stream = w.nextStream
		w.active = append(w.active, ls)
	}
	if len(w.active) == 0 {
		return nil
	}
	maxFrame := c.t.maxFrame
	headers := c.headers[:0]
	if cap(headers) < wire.FrameHeaderSize*maxActiveLarge {
		headers = make([]byte, 0, wire.FrameHeaderSize*maxActiveLarge)
		c.headers = headers
	}
	vec := c.vec[:0]
	for i := range w.active {
		ls := &w.active[i]
		var parts [2][]byte
		kind := wire.FrameLargeMore
		room := maxFrame
		if !ls.begun {
			kind = wire.FrameLargeBegin
			parts[0] = ls.header
			room -= len(ls.header)
		}
		n := min(room, len(ls.payload)-ls.sent)
		parts[1] = ls.payload[ls.sent : ls.sent+n]
		headers = wire.AppendFrameHeader(headers, kind, ls.stream, parts[0], parts[1])
		vec = append(vec, headers[len(headers)-wire.FrameHeaderSize:])
		if parts[0] != nil {
			vec = append(vec, parts[0])
		}
		if n > 0 {
			vec = append(vec, parts[1])
		}
		ls.begun = true
		ls.sent += n
	}
	written := net.Buffers(vec)
	_, err := written.WriteTo(c.conn.Conn) // the bare connection: net.Buffers uses writev only on it
	clear(vec)
	c.vec = vec[:0]
	if err != nil {
		w.failActive(c, ErrConnectionReset)
		return err
	}
	c.counters.writes.Add(1)
	c.measureSendQueue()
	kept := w.active[:0]
	for i := range w.active {
		ls := &w.active[i]
		if ls.sent < len(ls.payload) {
			kept = append(kept, *ls)
			continue
		}
		c.counters.sent.Add(1)
		if ls.isResponse {
			c.counters.responses.Add(1)
		}
		c.counters.sentBytes.Add(uint64(len(ls.header) + len(ls.payload)))
		w.finish(c, ls, nil)
	}
	clear(w.active[len(kept):])
	w.active = kept
	return nil
}

// finish gives back a message's capacity, failing it when err is set.
func (w *largeWriter) finish(c *outConn, ls *largeSend, err error) {
	if err != nil {
		it := outItem{id: ls.id, isRequest: ls.isRequest}
		c.fail(&it, ls.header, ls.payload, err)
	}
	c.queue.releaseBytes(ls.size)
	c.tiers.Release(ls.grant)
}

// failActive fails the messages whose parts were on a broken connection: a
// new connection cannot resume them.
func (w *largeWriter) failActive(c *outConn, err error) {
	for i := range w.active {
		w.finish(c, &w.active[i], err)
	}
	clear(w.active)
	w.active = w.active[:0]
}

// reset runs when the connection closes: messages not yet begun wait for
// the next connection; begun ones are lost with it.
func (w *largeWriter) reset(c *outConn) { w.failActive(c, ErrConnectionReset) }

func (w *largeWriter) failAll(c *outConn, err error) {
	w.admit(c)
	w.failActive(c, err)
	for i := range w.waiting {
		w.finish(c, &w.waiting[i], err)
	}
	clear(w.waiting)
	w.waiting = w.waiting[:0]
}

func (w *largeWriter) pruneExpired(c *outConn, now int64) {
	kept := w.waiting[:0]
	for i := range w.waiting {
		ls := &w.waiting[i]
		if ls.expiresAt != 0 && now >= ls.expiresAt {
			w.finish(c, ls, ErrExpired)
			continue
		}
		kept = append(kept, *ls)
	}
	clear(w.waiting[len(kept):])
	w.waiting = kept
}
