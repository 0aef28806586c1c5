package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// The raw-TCP baselines share one framing, drawn here:
//
//	+----------------+--------+----------------+-----------------+
//	| length (u32 BE)| kind u8| id (u64 BE)    | payload         |
//	+----------------+--------+----------------+-----------------+
//	  length counts kind, id and payload (9 + len(payload) bytes)
//
// kind is rawOneway, rawRequest or rawResponse; id pairs a response with its
// request (0 for one-way messages).
const (
	rawHeaderLen  = 13
	rawMaxMessage = 1 << 30

	rawOneway   byte = 0
	rawRequest  byte = 1
	rawResponse byte = 2
)

// frameWriter writes frames to one connection; writeFrame is safe for
// concurrent use and does not keep payload after it returns.
type frameWriter interface {
	writeFrame(kind byte, id uint64, payload []byte) error
	// close stops any goroutine the writer owns and waits for it.
	close()
}

func putRawHeader(dst []byte, kind byte, id uint64, payloadLen int) []byte {
	var hdr [rawHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(9+payloadLen))
	hdr[4] = kind
	binary.BigEndian.PutUint64(hdr[5:13], id)
	return append(dst, hdr[:]...)
}

// naiveWriter is what a hand-rolled transport usually does: a mutex around
// the connection and one Write per message.
type naiveWriter struct {
	mu      sync.Mutex // guards conn writes and scratch
	conn    net.Conn
	scratch []byte
}

func (w *naiveWriter) writeFrame(kind byte, id uint64, payload []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scratch = putRawHeader(w.scratch[:0], kind, id, len(payload))
	w.scratch = append(w.scratch, payload...)
	_, err := w.conn.Write(w.scratch)
	return err
}

func (w *naiveWriter) close() {}

// Limits of batchedWriter.
const (
	batchedHighWater = 4 << 20  // raw-tcp-batched: senders wait while this many bytes are pending
	batchedChunk     = 64 << 10 // bytes per Write call
)

// batchedWriter is the throughput ceiling: senders append frames to a
// shared buffer; one goroutine swaps it out and writes it in 64 KiB chunks.
// Senders wait while highWater bytes or more are pending.
type batchedWriter struct {
	conn      net.Conn
	highWater int
	mu        sync.Mutex // guards pending, err, closed
	room      *sync.Cond // signalled when pending is swapped out or on close
	pending   []byte
	err       error
	closed    bool
	wake      chan struct{} // one slot: "pending has data"
	stop      chan struct{}
	done      chan struct{}
}

func newBatchedWriter(conn net.Conn, highWater int) *batchedWriter {
	w := &batchedWriter{conn: conn, highWater: highWater, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	w.room = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

func (w *batchedWriter) writeFrame(kind byte, id uint64, payload []byte) error {
	w.mu.Lock()
	for len(w.pending) >= w.highWater && w.err == nil && !w.closed {
		w.room.Wait()
	}
	if w.err != nil || w.closed {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return err
	}
	w.pending = putRawHeader(w.pending, kind, id, len(payload))
	w.pending = append(w.pending, payload...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

func (w *batchedWriter) loop() {
	defer close(w.done)
	var spare []byte
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
		w.mu.Lock()
		buf := w.pending
		w.pending = spare[:0]
		w.room.Broadcast()
		w.mu.Unlock()
		for off := 0; off < len(buf); off += batchedChunk {
			end := min(off+batchedChunk, len(buf))
			if _, err := w.conn.Write(buf[off:end]); err != nil {
				w.mu.Lock()
				w.err = err
				w.room.Broadcast()
				w.mu.Unlock()
				return
			}
		}
		spare = buf
	}
}

func (w *batchedWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.room.Broadcast()
	w.mu.Unlock()
	close(w.stop)
	<-w.done
}

// readFrames reads frames from r until an error, calling fn for each; the
// payload passed to fn is valid only during the call.
func readFrames(r *bufio.Reader, fn func(kind byte, id uint64, payload []byte)) error {
	var hdr [rawHeaderLen]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[0:4])) - 9
		if n < 0 || n > rawMaxMessage {
			return fmt.Errorf("raw-tcp: bad frame length %d", n+9)
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		payload := buf[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
		fn(hdr[4], binary.BigEndian.Uint64(hdr[5:13]), payload)
	}
}

// errRawClosed fails requests pending when the client connection ends.
var errRawClosed = errors.New("raw-tcp: connection closed")
