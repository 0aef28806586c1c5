package transport

import (
	"io"
	"net"
	"time"

	"github.com/internode/internode/wire"
)

// outSink is where a writer core reports what became of each message: one
// write of several, a message that failed, capacity given back. The
// outbound connection implements it; tests use a recorder.
type outSink interface {
	// wrote records one vectored write that completed these messages.
	wrote(messages, bytes, responses int)
	// failed records a message that will not be written: its one outcome.
	failed(m *outMsg, reason Reason, err error)
	// release gives back capacity the written or failed messages held.
	release(n int64)
	// requestWritten records that the request id was written.
	requestWritten(id uint64)
}

// outMsg is what outSink.failed needs to know of a message.
type outMsg struct {
	id         uint64
	verb       uint32
	isRequest  bool
	isResponse bool
	// isCancel: the transport's own cancel of request id (sendCancel),
	// which no caller sent: counted, but no DroppedMessage.
	isCancel bool
	payload  []byte // valid only during the call
}

func (it *outItem) msg(buf []byte) outMsg {
	return outMsg{id: it.id, verb: it.verb, isRequest: it.isRequest, isResponse: it.isResponse,
		isCancel: it.payload == nil && int(it.start) < len(buf) && wire.MessageFlags(buf[it.start])&wire.FlagCancel != 0,
		payload:  it.payloadIn(buf)}
}

// frameWriter gathers frames of one connection for one vectored write. It
// never allocates on the steady path: headers and the vector are reused.
// Owned by the connection's writer goroutine.
type frameWriter struct {
	headers []byte
	vec     net.Buffers
	// writing is what WriteTo consumes: a field, so that handing its
	// address to the connection allocates nothing.
	writing net.Buffers
	// comp compresses batch frames (addBatch); nil when they go as they are.
	comp *compressor
	// Of the last write, for the send-queue sampler: its bytes, and
	// whether it took slowWrite or longer (it likely waited for room in
	// the socket's send buffer, so the queue may be at a peak).
	lastBytes int
	lastSlow  bool
	// written counts every byte written, for bounds on the socket's send
	// queue (outConn.sendQueueLow).
	written int64
	// frameEnds is where each frame gathered for the next write ends, in
	// bytes from the write's start; itemFrame, the frame each message of
	// the batch being written went into (-1: none). A write cut short
	// took the frames that end within it whole (writeBatch).
	frameEnds []int
	itemFrame []int
}

// slowWrite is how long a write must take to be measured whatever the
// sampler says: longer than copying a segment into the kernel takes.
const slowWrite = time.Millisecond

// reserve makes room for n frame headers: the vector aliases headers, so
// it must not grow while a write is being gathered.
func (fw *frameWriter) reserve(n int) {
	if need := wire.FrameHeaderSize * n; cap(fw.headers) < need {
		fw.headers = make([]byte, 0, need)
	}
	fw.headers = fw.headers[:0]
	fw.vec = fw.vec[:0]
	fw.frameEnds = fw.frameEnds[:0]
}

// add appends a frame of kind over parts (empty parts are left out of the
// vector).
func (fw *frameWriter) add(kind wire.FrameKind, stream uint32, parts ...[]byte) {
	fw.headers = wire.AppendFrameHeader(fw.headers, kind, stream, parts...)
	fw.vec = append(fw.vec, fw.headers[len(fw.headers)-wire.FrameHeaderSize:])
	end := wire.FrameHeaderSize
	if n := len(fw.frameEnds); n > 0 {
		end += fw.frameEnds[n-1]
	}
	for _, p := range parts {
		if len(p) > 0 {
			fw.vec = append(fw.vec, p)
			end += len(p)
		}
	}
	fw.frameEnds = append(fw.frameEnds, end)
}

func (fw *frameWriter) empty() bool { return len(fw.vec) == 0 }

// buffered returns the bytes gathered for the next flush.
func (fw *frameWriter) buffered() int {
	n := 0
	for _, b := range fw.vec {
		n += len(b)
	}
	return n
}

// flush writes what was gathered with one vectored write (writev on a TCP
// connection) and forgets it.
func (fw *frameWriter) flush(dst io.Writer) error {
	if len(fw.vec) == 0 {
		return nil
	}
	vec := fw.vec
	fw.writing = vec
	start := time.Now()
	n, err := fw.writing.WriteTo(dst)
	fw.lastBytes, fw.lastSlow = int(n), time.Since(start) >= slowWrite
	fw.written += n
	clear(vec) // no reference to payloads survives the write
	fw.vec, fw.writing = vec[:0], nil
	if fw.comp != nil {
		fw.comp.releaseHeld(fw.wholeFrames())
	}
	return err
}

// wholeFrames returns how many of the frames gathered for the last write
// it took whole: all of them, unless it was cut short.
func (fw *frameWriter) wholeFrames() int {
	whole := 0
	for whole < len(fw.frameEnds) && fw.frameEnds[whole] <= fw.lastBytes {
		whole++
	}
	return whole
}

// writePing writes one FramePing.
func (fw *frameWriter) writePing(dst io.Writer) error {
	fw.reserve(1)
	fw.add(wire.FramePing, 0)
	return fw.flush(dst)
}

// writeBatch frames the live messages of b — a segment of a small lane's
// queue — as batch frames of at most maxFrame bytes and writes them with
// one vectored write. Messages expired at now fail (ReasonExpired). If the
// write fails, the messages of the frames it wrote whole count as written,
// as a message does once written to its socket (the peer may or may not
// get them: handed to OnDropped, a hint replayed would run twice), and the
// others fail with ReasonConnectionReset. It returns what it wrote.
func (fw *frameWriter) writeBatch(dst io.Writer, b *batch, maxFrame int, now int64, sink outSink) (messages, bytes int, err error) {
	buf := b.buf.B
	fw.reserve(len(b.items) + len(buf)/maxFrame + 1)
	if cap(fw.itemFrame) < len(b.items) {
		fw.itemFrame = make([]int, len(b.items))
	}
	fw.itemFrame = fw.itemFrame[:len(b.items)]
	responses, inFrame := 0, 0
	frameStart, frameEnd := -1, -1
	// Cancels go in frames of their own, of at most maxUnadmittedFrame
	// bytes, ahead of the write's other frames: a receiver whose room the
	// handlers they stop hold reads and acts on such a frame at once, but
	// waits for room for any other and reads nothing behind it meanwhile.
	// (A cancel that overtakes its request is remembered for it.)
	closeFrame := func() {
		if frameStart >= 0 {
			fw.addBatch(buf[frameStart:frameEnd])
			frameStart, inFrame = -1, 0
		}
	}
	passes := 1
	for i := range b.items {
		if b.items[i].isCancel(buf) {
			passes = 2 // the cancels, then the rest
			break
		}
	}
	for pass := range passes {
		for i := range b.items {
			it := &b.items[i]
			isCancel := passes == 2 && it.isCancel(buf)
			if passes == 2 && isCancel != (pass == 0) {
				continue
			}
			if it.expired(now) {
				closeFrame()
				m := it.msg(buf)
				sink.failed(&m, ReasonExpired, nil)
				fw.itemFrame[i] = -1
				continue
			}
			start, end := int(it.start), int(it.end)
			if frameStart >= 0 && (start != frameEnd || end-frameStart > maxFrame || inFrame == wire.MaxBatchMessages ||
				isCancel && end-frameStart > maxUnadmittedFrame) {
				closeFrame()
			}
			inFrame++
			if frameStart < 0 {
				frameStart = start
			}
			fw.itemFrame[i] = len(fw.frameEnds) // the frame closeFrame adds next
			frameEnd = end
			if it.expiresAt != 0 {
				// The time it waited here is not given to it again there.
				_ = wire.SetTTL(buf[start:end], it.expiresAt-now)
			}
			if it.isResponse {
				responses++
			}
			messages++
			bytes += end - start
		}
		closeFrame()
	}
	if fw.empty() {
		return 0, 0, nil
	}
	if err := fw.flush(dst); err != nil {
		whole := fw.wholeFrames()
		messages, bytes, responses = 0, 0, 0
		for i := range b.items {
			it := &b.items[i]
			switch frame := fw.itemFrame[i]; {
			case frame < 0: // expired, failed above
			case frame < whole:
				if it.isRequest {
					sink.requestWritten(it.id) // its connection's end fails it
				}
				if it.isResponse {
					responses++
				}
				messages++
				bytes += int(it.end - it.start)
			default:
				m := it.msg(buf)
				sink.failed(&m, ReasonConnectionReset, err)
			}
		}
		if messages > 0 {
			sink.wrote(messages, bytes, responses)
		}
		return messages, bytes, err
	}
	for i := range b.items {
		if it := &b.items[i]; it.isRequest && !it.expired(now) {
			sink.requestWritten(it.id)
		}
	}
	sink.wrote(messages, bytes, responses)
	return messages, bytes, nil
}
