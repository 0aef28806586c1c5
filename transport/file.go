package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/wire"
)

// Errors of file transfers.
var (
	// ErrIncomplete: a transfer ended before all its bytes were moved.
	ErrIncomplete = errors.New("transport: transfer incomplete")
	// ErrCorrupt: the bytes received do not match the sender's checksum.
	ErrCorrupt = errors.New("transport: checksum mismatch")
)

// FileHandler receives the file transfers of one verb.
type FileHandler interface {
	// ServeFile must consume the transfer, with ReceiveTo or Reader (one
	// of 0 bytes needs neither); its error, or an incomplete or corrupt
	// transfer, fails the sender's SendFile: a corrupt one with ErrCorrupt
	// whatever the handler returns, and an error of the handler's as a
	// Handler's fails a Request (ErrHandler, save overloaded, too large
	// or expired). A handler that returns nil without taking every byte
	// fails it as its own too (ErrHandler), unless a read of Reader's met
	// the connection's end first (ErrIncomplete). ctx ends when the
	// transfer expires or the transport closes. A sender that sends
	// nothing for Timeouts.Keepalive is cut off: the read fails with
	// ErrIncomplete.
	ServeFile(ctx context.Context, ft *FileTransfer) error
}

// FileHandlerFunc adapts a function to FileHandler.
type FileHandlerFunc func(ctx context.Context, ft *FileTransfer) error

// ServeFile calls f(ctx, ft).
func (f FileHandlerFunc) ServeFile(ctx context.Context, ft *FileTransfer) error { return f(ctx, ft) }

// FileTransfer is an incoming file, as a FileHandler sees it. It is valid
// only until the handler returns, and not safe for concurrent use.
type FileTransfer struct {
	From   cluster.NodeID
	Verb   Verb
	ID     uint64
	Length int64 // bytes the sender sends
	// Unchecked says the sender sent no checksum (SendFile with
	// Unchecked): ReceiveTo and Reader do not verify the bytes, and
	// the application checks them itself, or refuses the transfer.
	Unchecked bool

	conn     net.Conn
	chunk    int64         // the bytes spliced in the next call, and checksummed behind
	maxChunk int64         // the most in one call
	silence  time.Duration // Timeouts.Keepalive: how long the sender may send nothing; 0: forever
	received int64
	readCRC  uint32 // Reader's checksum of the received bytes, across its readers
	verified bool
	corrupt  bool  // the bytes did not match the sender's checksum
	mismatch error // verify's error when corrupt
	failed   error // ReceiveTo's or verify's error: the transfer is over, and Reader returns it
	cut      error // a Reader's read that failed before the last byte (ErrIncomplete)
}

// ReceiveTo reads minReceiveRead bytes in its first call, each call within
// the sender's allowed silence, and doubles that, up to Files.Chunk, after
// a read that took less than a quarter of it, or halves it: a sender that
// goes silent is cut off, one that is slow (rate-limited, sending a
// second's worth at a time) is not.
const minReceiveRead = 64 << 10

// readDeadline bounds the next read by the sender's allowed silence.
func (ft *FileTransfer) readDeadline() {
	if ft.silence > 0 {
		_ = ft.conn.SetReadDeadline(time.Now().Add(ft.silence))
	}
}

// verify reads the sender's checksum, which follows the bytes, and
// compares it with crc; an unchecked transfer has none.
func (ft *FileTransfer) verify(crc uint32) error {
	if ft.Unchecked {
		ft.verified = true
		return nil
	}
	var trailer [wire.FileTrailerSize]byte
	ft.readDeadline()
	if _, err := io.ReadFull(ft.conn, trailer[:]); err != nil {
		ft.failed = fmt.Errorf("%w: no checksum after the bytes: %w", ErrIncomplete, err)
		return ft.failed
	}
	if want := binary.BigEndian.Uint32(trailer[:]); crc != want {
		ft.corrupt = true
		ft.mismatch = fmt.Errorf("%w: CRC32C %08x, sender's %08x", ErrCorrupt, crc, want)
		ft.failed = ft.mismatch
		return ft.mismatch
	}
	ft.verified = true
	return nil
}

// HandleFile registers h for the file transfers peers send with verb. Safe
// to call while serving; nil removes the handler.
func (t *Transport) HandleFile(verb Verb, h FileHandler) {
	setHandler(&t.handlersMu, &t.fileHandlers, verb, h)
}

// SendFile sends length bytes of f, from offset, to peer, where the
// handler registered with HandleFile for verb receives them, and returns
// the bytes sent once the receiver has verified them.
//
// Each transfer has a connection of its own, so the kernel moves the bytes
// with sendfile(2) here and splice(2) there: they never enter user space.
// Integrity is checked end to end with a CRC32C of the range: each side
// reads the range once more from the page cache (256 KiB reads), a chunk
// behind the bytes the kernel moves, while they are still in the CPU's
// cache (the checksum follows the bytes). That costs about as much CPU as
// moving the bytes (in `bench -scenario file`, 1.9× raw sendfile's CPU
// per GB with it, 0.97–1.05× without), and takes a core from a transfer that
// needs both; Unchecked leaves it out, for files that carry checksums of
// their own, and (under no Files.RateLimit, on plain TCP) moves the range
// in one call on each side rather than in Files.Chunk pieces. f must be a
// regular file.
// SendFile moves f's file offset; do not share f with concurrent readers.
//
// A receiver that takes none of the bytes for Timeouts.Write fails the
// send (ErrIncomplete), and over TLS so does one that takes less than a
// Files.Chunk in that time (a TLS write that meets its deadline breaks
// the connection); once every byte is sent, SendFile waits for the
// receiver's handler to return, which may take long (a snapshot applied,
// say): until ctx's deadline, or without one for the verb's request
// timeout (Timeouts.PerVerb, Timeouts.Request), as Request does, counted
// from about the last byte the receiver took (bytes still queued in this
// side's socket, which a handler that reads slowly takes later, do not
// count against it while it takes some every timeout); then it fails with context.DeadlineExceeded (a
// net.Error with Timeout() true), whether the handler is stuck or the
// peer stopped answering, which this side cannot tell apart (the
// receiver may still accept the bytes after that). A verb
// whose handler takes longer needs a deadline in ctx (the receiver's
// handler then has it too) or its own PerVerb entry.
//
// Shutdown does not wait for transfers: Shutdown or Close cuts one under
// way, on either side; and the peer's leaving the membership cuts it here
// (ErrPeerLeft), as it fails the requests waiting for that peer.
//
// Errors: ErrUnknownVerb, ErrOverloaded (the peer receives too many
// transfers: Files.MaxConcurrent in all, or Security.MaxConnsPerPeer from
// this node, which refuses the connection's handshake; or it is shutting
// down), ErrExpired, ErrHandler (its handler's error, or the file it
// received into could not be written: a full disk, or the handler
// returned without taking every byte), ErrCorrupt and
// ErrIncomplete as a *RemoteError when the receiver failed the transfer;
// ErrIncomplete when
// the connection ended early or the receiver stopped taking the bytes; the
// context's error on cancellation, and context.DeadlineExceeded once the
// rate limit cannot send the next chunk by the context's deadline;
// ErrUnknownPeer, ErrRefused (to is this node's own ID), ErrPeerLeft,
// ErrClosed; each in an *OpError. Stats
// counts each call once, in FilesSent or FileSendFailures.
func (t *Transport) SendFile(ctx context.Context, to cluster.NodeID, verb Verb, f *os.File, offset, length int64, opts ...FileOption) (int64, error) {
	var o fileOptions
	for _, opt := range opts {
		opt(&o)
	}
	var p *peer
	fail := func(sent int64, err error) (int64, error) {
		t.fileSendFailures.Add(1)
		if t.ctx.Err() != nil && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
			// The close cut the transfer off. Not while Shutdown drains
			// (closing, not yet closed): that leaves transfers under way
			// alone, and one that fails then fails for its own reason.
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		if p != nil && ctx.Err() == nil {
			err = leftErr(p.ctx, err) // the peer's leaving cut it off
		}
		return sent, &OpError{Op: "send file", Peer: to, Lane: laneFile, Err: err}
	}
	if t.closing.Load() {
		return fail(0, ErrClosed)
	}
	if offset < 0 || length < 0 {
		return fail(0, fmt.Errorf("transport: bad file range [%d, +%d)", offset, length))
	}
	if info, err := f.Stat(); err != nil {
		return fail(0, err)
	} else if !info.Mode().IsRegular() {
		// A pipe or a device has no size to check the range against,
		// and sendfile needs a file it can read at an offset.
		return fail(0, fmt.Errorf("transport: %s is not a regular file (%v)", f.Name(), info.Mode().Type()))
	} else if length > info.Size()-offset { // offset+length could overflow
		return fail(0, fmt.Errorf("transport: range [%d, %d) past the end of %s (%d bytes): %w",
			offset, offset+length, f.Name(), info.Size(), io.ErrUnexpectedEOF))
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fail(0, err)
	}
	var err error
	if p, err = t.peerFor(to, true); err != nil {
		return fail(0, err)
	}
	conn, caps, err := t.dialFor(ctx, p, uint8(laneFile))
	if err != nil {
		var he *HandshakeError
		if errors.As(err, &he) && he.Reason == wire.Busy {
			// The peer holds as many transfers from this node as it allows
			// (Security.MaxConnsPerPeer), or is shutting down: overloaded,
			// as when Files.MaxConcurrent refuses the transfer.
			err = fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		return fail(0, err)
	}
	defer conn.Close()
	// Cancellation, the peer's leaving, or the transport closing (which
	// ends p.ctx too) ends the transfer.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	stopOnLeave := context.AfterFunc(p.ctx, func() { conn.Close() })
	defer stopOnLeave()

	now := time.Now()
	h := wire.FileHeader{Verb: uint32(verb), ID: t.nextID.Add(1), CreatedAt: now.UnixNano(), Length: uint64(length)}
	// A peer that cannot take a transfer without its checksum gets one.
	unchecked := o.unchecked && caps&wire.CapFileFlags != 0
	if unchecked {
		h.Flags = wire.FileUnchecked
	}
	if d, ok := ctx.Deadline(); ok {
		h.TTL = max(time.Until(d).Nanoseconds(), 1)
	}
	if _, err := conn.Write(wire.AppendFileHeader(nil, &h)); err != nil {
		return fail(0, ctxErrOr(ctx, err))
	}
	// The receiver answers the header first: ready (an empty result), or
	// why not, before any byte of the file is sent; it does so at once.
	_ = conn.SetReadDeadline(time.Now().Add(t.cfg.Timeouts.Handshake))
	failure, err := wire.ReadFileResult(conn)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		return fail(0, ctxErrOr(ctx, fmt.Errorf("%w: no answer from the receiver: %w", ErrIncomplete, err)))
	} else if failure != nil {
		return fail(0, &RemoteError{Code: failure.Code, Message: failure.Message})
	}
	// The verdict is read while the bytes go: a receiver that fails the
	// transfer before its last byte (its handler returned) answers then,
	// and the sending stops. Over a connection with no buffer (net.Pipe)
	// that answer waits for this side to read it, while this side's
	// write waits for the receiver to read: read only after the last
	// byte, it was lost, and the transfer failed as cut off in transit.
	verdicts := newVerdictReader(conn)
	defer verdicts.stop()
	// The checksum is computed a chunk behind the bytes the kernel sends.
	sumCtx, cancelSum := context.WithCancel(ctx)
	moved := func(at, n int64) {}
	var crc *crcBehind
	if !unchecked {
		crc = checksumBehind(sumCtx, f)
		moved = func(at, n int64) { crc.add(offset+at, n) }
	}
	t.filesSending.Add(1)
	sent, sendErr := t.sendFileBytes(ctx, p, conn, f, length, unchecked, verdicts.answered, moved)
	t.filesSending.Add(-1)
	if sendErr != nil {
		cancelSum()
	}
	var sum checksumResult
	if crc != nil {
		sum = crc.result()
	}
	cancelSum()
	if sendErr == nil && sum.err != nil {
		return fail(sent, sum.err)
	}
	if sendErr == nil && !unchecked {
		var trailer [wire.FileTrailerSize]byte
		binary.BigEndian.PutUint32(trailer[:], sum.crc)
		t.setFileWriteDeadline(conn)
		if verdicts.answered.Err() != nil {
			sendErr = errAnswered
		} else {
			_, sendErr = conn.Write(trailer[:])
			_ = conn.SetWriteDeadline(time.Time{})
		}
	}
	if sendErr != nil && ctx.Err() != nil {
		return fail(sent, ctx.Err())
	}
	if errors.Is(sendErr, context.DeadlineExceeded) {
		return fail(sent, sendErr) // the rate limit cannot send the rest by ctx's deadline
	}
	if sendErr != nil {
		// The receiver still waits for the bytes: end this side so that
		// it sees the end and answers, rather than both sides waiting;
		// but a receiver whose handler is stuck answers never.
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = conn.SetReadDeadline(time.Now().Add(t.cfg.Timeouts.Handshake))
	}
	verdictTimeout := time.Duration(0)
	if _, ok := ctx.Deadline(); !ok && sendErr == nil {
		// The receiver answers once its handler returns: without a
		// deadline in ctx, a handler that never returns, or a peer that
		// stopped answering, would hold this call for ever.
		verdictTimeout = t.cfg.requestTimeout(verb)
		_ = conn.SetReadDeadline(time.Now().Add(verdictTimeout))
	}
	// Read the verdict even after a failed send: a receiver that gave up
	// says why before it closes.
	if verdictTimeout > 0 {
		failure, err = t.readVerdictWhileTaken(conn, verdicts, verdictTimeout)
	} else {
		failure, err = verdicts.take()
	}
	switch {
	case failure != nil && errors.Is(sendErr, errAnswered):
		// The sending stopped for the verdict: nothing else to say.
		return fail(sent, &RemoteError{Code: failure.Code, Message: failure.Message})
	case failure != nil && sendErr != nil:
		// The verdict may only echo this side's failure (a file it could
		// not read: "0 of n bytes"): keep the cause too.
		return fail(sent, fmt.Errorf("%w (sending: %w)", &RemoteError{Code: failure.Code, Message: failure.Message}, sendErr))
	case failure != nil:
		return fail(sent, &RemoteError{Code: failure.Code, Message: failure.Message})
	case sendErr != nil && !errors.Is(sendErr, ErrIncomplete):
		return fail(sent, fmt.Errorf("%w: %d of %d bytes sent: %w", ErrIncomplete, sent, length, sendErr))
	case sendErr != nil:
		return fail(sent, sendErr)
	case err != nil && verdictTimeout > 0 && isTimeout(err) && ctx.Err() == nil:
		return fail(sent, fmt.Errorf("%w: no verdict from the receiver %v after the last byte: %w", context.DeadlineExceeded, verdictTimeout, err))
	case err != nil:
		return fail(sent, ctxErrOr(ctx, fmt.Errorf("%w: no result from the receiver: %w", ErrIncomplete, err)))
	}
	t.filesSent.Add(1)
	t.fileBytesSent.Add(uint64(sent))
	return sent, nil
}

// A FileOption says how SendFile sends a file.
type FileOption func(*fileOptions)

type fileOptions struct {
	unchecked bool
}

// Unchecked sends the file without its CRC32C: neither side reads the
// range again to checksum it, and the receiver's FileTransfer says
// Unchecked. For files that carry checksums of their own, which the
// application verifies (an SSTable's per-block checksums, say): the
// checksum costs each side about as much CPU as moving the bytes. TCP's
// own 16-bit checksum (and TLS's, when on) still covers the bytes on the
// way. A peer that cannot take a transfer without a checksum (it did not
// agree wire.CapFileFlags) gets one.
func Unchecked() FileOption {
	return func(o *fileOptions) { o.unchecked = true }
}

// sendFileBytes moves length bytes from f's offset to conn in chunks, under
// the node's rate limit, and calls moved with each chunk's place (bytes
// from the start) and size once it is sent. On a plain TCP connection each
// chunk is one sendfile(2) call; otherwise (TLS, or a connection of a
// Config.Dialer's that is not a *net.TCPConn) it is a buffered copy.
// Whole (an unchecked transfer, whose bytes no checksum follows a chunk
// behind) sends all that is left in each call on plain TCP when no rate
// limit needs chunks. A receiver that takes nothing for Timeouts.Write
// ends it with ErrIncomplete; but for TLS, one that is slow, but takes
// some, does not: a call that moved bytes by its deadline is followed by
// another. It ends when p stops (the transport closes, or p leaves), as
// SendFile's closing conn then ends a write.
func (t *Transport) sendFileBytes(ctx context.Context, p *peer, conn net.Conn, f *os.File, length int64, whole bool, answered context.Context, moved func(at, n int64)) (int64, error) {
	defer func() { _ = conn.SetWriteDeadline(time.Time{}) }()
	// Closing conn ends a write but not a wait on the rate limit, which
	// at a low rate lasts many seconds: that wait ends with p too, and
	// with the receiver's verdict.
	waitCtx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	defer context.AfterFunc(p.ctx, stopWait)()
	defer context.AfterFunc(answered, stopWait)()
	tcp, plain := conn.(*net.TCPConn)
	// A write that meets its deadline breaks a TLS connection for good
	// (it may have left a record half written); any other goes on from
	// where it stopped.
	resumable := t.tls == nil
	// Where the range begins: a buffered copy whose write met its
	// deadline had read past the bytes it wrote.
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	var sent int64
	// paidFor is the rest of a chunk whose write met its deadline part
	// way: the limiter was charged for it with the chunk, so it goes next
	// without a wait.
	var paidFor int64
	for sent < length {
		n := min(t.fileChunk(), length-sent)
		if whole && t.fileLimiter == nil && plain {
			// Not over TLS: there a write that meets its deadline breaks
			// the connection for good, so the range goes in chunks, each
			// under a Timeouts.Write of its own, or a transfer that takes
			// longer than one Write to a receiver reading all along fails.
			n = length - sent
		}
		if paidFor > 0 {
			n, paidFor = paidFor, 0
		} else if t.fileLimiter != nil {
			if err := t.fileLimiter.WaitN(waitCtx, int(n)); err != nil {
				if ctx.Err() == nil && answered.Err() != nil {
					return sent, errAnswered
				}
				if ctx.Err() == nil && p.ctx.Err() != nil {
					return sent, fmt.Errorf("%w: %d of %d bytes sent: %w", ErrIncomplete, sent, length, p.stopErr())
				}
				if ctx.Err() == nil {
					// The limiter refuses a wait that would end past ctx's
					// deadline: the transfer cannot finish in time.
					err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
				}
				return sent, err
			}
		}
		t.setFileWriteDeadline(conn)
		if answered.Err() != nil {
			// After the deadline set: the verdict's reader sets one in the
			// past once it has answered, which a write then meets.
			return sent, errAnswered
		}
		var m int64
		var err error
		if plain {
			m, err = tcp.ReadFrom(io.LimitReader(f, n))
		} else {
			m, err = io.CopyN(conn, f, n)
		}
		if m > 0 {
			moved(sent, m)
		}
		sent += m
		if err != nil && answered.Err() != nil && ctx.Err() == nil {
			return sent, errAnswered
		}
		if err != nil && isTimeout(err) && ctx.Err() == nil {
			if resumable && m > 0 {
				// Slow, not stopped: the rest of the chunk goes next,
				// from the first byte not written (sendfile leaves f's
				// offset there; a buffered copy read on).
				if _, err := f.Seek(start+sent, io.SeekStart); err != nil {
					return sent, err
				}
				paidFor = n - m
				continue
			}
			if m > 0 {
				// Over TLS, where a write that meets its deadline breaks
				// the connection: a chunk must go within one Write.
				return sent, fmt.Errorf("%w: the receiver took %d of a %d-byte chunk in %v, after %d of %d bytes", ErrIncomplete, m, n, t.cfg.Timeouts.Write, sent, length)
			}
			return sent, fmt.Errorf("%w: the receiver took nothing for %v, after %d of %d bytes", ErrIncomplete, t.cfg.Timeouts.Write, sent, length)
		}
		if err != nil {
			return sent, err
		}
		if m < n {
			return sent, fmt.Errorf("%w: the file ended after %d of %d bytes", ErrIncomplete, sent, length)
		}
	}
	return sent, nil
}

// readVerdictWhileTaken reads a transfer's verdict by the read deadline
// set for timeout, and sets it timeout later each time it passes with no
// byte of the verdict read while the receiver still took bytes queued in
// this side's socket since it was set: the verdict's timeout is the
// handler's, counted from about the last byte it took, not from the last
// written here. Megabytes wait in the sockets after the last write, and a
// handler that read them slowly but steadily (2 MiB/s, applying each
// piece) had its transfer failed while it still took them. A receiver
// that takes none for a whole timeout meets it as before. Where the
// queue cannot be read (no kernel socket) it is counted from the last
// byte written; turning the socket measurement off does not stop it.
func (t *Transport) readVerdictWhileTaken(conn net.Conn, verdicts *verdictReader, timeout time.Duration) (*wire.Failure, error) {
	probe := t.probeFor(conn)
	if probe == nil {
		return verdicts.take()
	}
	queued, err := probe.SendQueue()
	if err != nil || queued == 0 {
		return verdicts.take()
	}
	for {
		failure, err := verdicts.take()
		if err == nil || verdicts.read > 0 || !isTimeout(err) {
			return failure, err
		}
		left, qerr := probe.SendQueue()
		if qerr != nil || left >= queued {
			return failure, err // took nothing for the whole timeout
		}
		queued = left // an empty queue gets one more timeout: the handler's
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		verdicts.start()
	}
}

// errAnswered ends sendFileBytes when the receiver failed the transfer
// before its last byte.
var errAnswered = errors.New("transport: the receiver failed the transfer before its last byte")

// verdictReader reads a file transfer's verdict, in a goroutine of its own,
// from the moment the receiver is ready for the bytes. A failure read ends
// answered, and makes a write under way fail at once; a success waits for
// the sending to end (a receiver answers it only once it has every byte).
type verdictReader struct {
	conn     net.Conn
	answered context.Context // ended once a failure was read
	answer   context.CancelFunc
	result   chan fileVerdict
	pending  bool  // a read is under way, its result not taken
	read     int64 // bytes of the verdict the last read taken read
}

type fileVerdict struct {
	failure *wire.Failure
	read    int64
	err     error
}

func newVerdictReader(conn net.Conn) *verdictReader {
	v := &verdictReader{conn: conn, result: make(chan fileVerdict, 1)}
	v.answered, v.answer = context.WithCancel(context.Background())
	v.start()
	return v
}

// start reads the verdict, by conn's read deadline.
func (v *verdictReader) start() {
	v.pending = true
	go func() {
		var read int64
		failure, err := wire.ReadFileResult(countingReader{r: v.conn, n: &read})
		if failure != nil {
			v.answer() // before the deadline: a write that sets its own looks first
			_ = v.conn.SetWriteDeadline(aLongTimeAgo)
		}
		v.result <- fileVerdict{failure, read, err}
	}()
}

// take waits for the read under way.
func (v *verdictReader) take() (*wire.Failure, error) {
	r := <-v.result
	v.pending = false
	v.read = r.read
	return r.failure, r.err
}

// stop ends a read under way, closing conn, and waits for it.
func (v *verdictReader) stop() {
	if v.pending {
		v.conn.Close()
		v.take()
	}
	v.answer()
}

// setFileWriteDeadline bounds SendFile's next write by Timeouts.Write.
func (t *Transport) setFileWriteDeadline(conn net.Conn) {
	if d := t.cfg.Timeouts.Write; d > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(d))
	}
}

// fileChunk is the most bytes SendFile sends at once: Files.Chunk, or under
// the node's rate limit a share of it small enough that each transfer's
// receiver hears from it well within its Keepalive, however many send at
// once. The limiter serves the transfers' chunks in turn, so each waits
// for the others' between its own: with n sending, one transfer's chunks
// go n chunks' time apart. This node's Keepalive stands for the
// receiver's.
func (t *Transport) fileChunk() int64 {
	c := t.cfg.Files
	if t.fileLimiter == nil {
		return int64(c.Chunk)
	}
	apart := time.Second
	if k := t.cfg.Timeouts.Keepalive; k > 0 {
		apart = min(apart, k/4)
	}
	sending := float64(max(t.filesSending.Load(), 1))
	most := rateLimitedChunk(c)
	// Bounded before the conversion: a rate near the largest int64 would
	// overflow it.
	share := most
	if f := float64(c.RateLimit) * apart.Seconds() / sending; f < float64(most) {
		share = int64(f)
	}
	// Not less than minRateLimitedChunk, to spare calls, while that much
	// comes within twice apart, half the receiver's allowed silence; under
	// a rate lower still, a 4 KiB chunk would come after the receiver
	// has given up on its sender.
	least := int64(minRateLimitedChunk)
	if share < minRateLimitedChunk/2 {
		least = max(2*share, 1)
	}
	return min(most, max(share, least))
}

// minRateLimitedChunk is the least fileChunk sends at once, but under a
// rate too low to send it within half the receiver's Keepalive.
const minRateLimitedChunk = 4 << 10

// serveFile receives one transfer on an accepted file connection.
// release gives back the connection's claim (claimConn): before the last
// answer when nothing but the connection's close follows it (a success,
// or a failure once every byte and the checksum were read), so that a
// sender told its transfer is over may open the next connection at once,
// within Security.MaxConnsPerPeer; after a failure whose bytes may still
// be arriving only once they have been discarded, when the connection
// ends, so that a peer failing transfers one after another cannot hold
// more connections than the limit while they drain.
func (t *Transport) serveFile(conn net.Conn, p *peer, caps wire.Capabilities, release func()) {
	result := func(err error) {
		var f *wire.Failure
		if err != nil {
			t.fileReceiveFailures.Add(1)
			code := failureCode(err)
			switch {
			case errors.Is(err, ErrCorrupt):
				code = wire.FailureCorrupt
			case errors.Is(err, ErrIncomplete):
				code = wire.FailureIncomplete
			}
			f = &wire.Failure{Code: code, Message: err.Error()}
		}
		_ = conn.SetWriteDeadline(time.Now().Add(t.cfg.Timeouts.Handshake))
		_, _ = conn.Write(wire.AppendFileResult(nil, f))
	}
	_ = conn.SetReadDeadline(time.Now().Add(t.cfg.Timeouts.Handshake))
	h, err := wire.ReadFileHeader(conn, make([]byte, wire.MaxFileHeaderSize), caps)
	deadline := h.Deadline(monoNanos())
	if err != nil {
		var ne net.Error
		alert := isLocalAlert(err) // TLS refused the peer's bytes: bad input
		if !alert && (errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && !ne.Timeout()) {
			return // the peer went away, or the connection broke
		}
		if !alert && !errors.Is(err, io.ErrUnexpectedEOF) {
			// Cut by the connection's end, ReadFileHeader's ErrTruncated
			// is io.ErrUnexpectedEOF too; otherwise a field was cut inside
			// a header that all arrived.
			err = cutWithin("file header", err)
		}
		kind := badInputOf(err)
		t.malformed[kind].Add(1)
		t.logs.warn(logKey{badInput: kind + 1}, "internode: closing file connection on bad input", "remote", conn.RemoteAddr(), "peer", p.id, "err", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	if int(t.filesReceiving.Add(1)) > t.cfg.Files.MaxConcurrent {
		t.filesReceiving.Add(-1)
		release()
		result(fmt.Errorf("%w: %d transfers already", ErrOverloaded, t.cfg.Files.MaxConcurrent))
		return
	}
	// The transfer's last answer frees its place first: a sender told
	// that its transfer is over may send the next one at once.
	answer := func(err error, bytesFollow bool) {
		t.filesReceiving.Add(-1)
		if err == nil || !bytesFollow {
			release()
		}
		result(err)
	}
	handler := (*t.fileHandlers.Load())[Verb(h.Verb)]
	switch {
	case handler == nil:
		answer(fmt.Errorf("%w %d", ErrUnknownVerb, h.Verb), false)
		return
	case t.closing.Load():
		// Shutdown does not wait for transfers: one begun now would be
		// cut off by its close. Refused as a new file connection is
		// (claimConn), so that its sender turns to another node at once.
		answer(errShuttingDown, false)
		return
	case deadline != 0 && monoNanos() >= deadline:
		answer(ErrExpired, false)
		return
	case h.Length > 1<<62:
		answer(fmt.Errorf("%w: %d bytes", ErrTooLarge, h.Length), false)
		return
	}
	result(nil) // ready: send the bytes
	ctx := t.ctx
	if deadline != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, wallDeadline(deadline, time.Now()))
		defer cancel()
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	ft := &FileTransfer{From: p.id, Verb: Verb(h.Verb), ID: h.ID, Length: int64(h.Length),
		Unchecked: h.Flags&wire.FileUnchecked != 0, conn: conn,
		chunk: minReceiveRead, maxChunk: int64(max(t.cfg.Files.Chunk, minReceiveRead)),
		silence: max(t.cfg.Timeouts.Keepalive, 0)}
	returned := false
	defer func() {
		if !returned {
			// The handler ended its goroutine (runtime.Goexit): the
			// transfer is answered on the way out, as a panic's is.
			t.log.Error("internode: file handler ended its goroutine", "peer", ft.From, "verb", ft.Verb)
			t.fileHandled(conn, p, ft, errHandlerExited, answer)
		}
	}()
	herr := t.serveFileHandler(ctx, handler, ft)
	returned = true
	t.fileHandled(conn, p, ft, herr, answer)
}

// fileHandled answers transfer ft, received on conn from p, once its
// handler has returned herr.
func (t *Transport) fileHandled(conn net.Conn, p *peer, ft *FileTransfer, herr error, answer func(err error, bytesFollow bool)) {
	// The handler's error, as the sender is to learn it; the checks
	// below may still name what the transfer itself found.
	err := handlerFailure(herr)
	if ft.corrupt && !errors.Is(err, ErrCorrupt) {
		// The handler dropped ReceiveTo's or Reader's ErrCorrupt, or
		// wrapped it without %w: the sender still learns that the bytes
		// did not match, not that they were incomplete or the handler's.
		if err == nil {
			err = ft.mismatch
		} else {
			err = fmt.Errorf("%w (the handler returned: %v)", ft.mismatch, err)
		}
	}
	if err == nil && ft.failed != nil {
		// The handler dropped ReceiveTo's or Reader's error: the sender
		// learns it, and the trailer is not waited for again.
		err = ft.failed
	}
	if err == nil && !ft.verified && ft.Length == 0 && !ft.corrupt {
		// Nothing to read but the trailer, which a handler with nothing
		// to do need not ask for: the CRC32C of no bytes is 0.
		err = ft.verify(0)
	}
	if err == nil && !ft.verified && ft.cut != nil {
		// The handler dropped Reader's error: the transfer was cut.
		err = ft.cut
	}
	if err == nil && !ft.verified {
		// The bytes came, or were still coming, and the handler returned
		// without them: its failure, not the connection's. As
		// ErrIncomplete, the sender took it for bytes cut off in transit
		// and a retry loop sent the file again, to be turned down again.
		err = fmt.Errorf("transport: the file handler returned having taken %d of %d bytes", ft.received, ft.Length)
	}
	if err == nil {
		t.filesReceived.Add(1)
		t.fileBytesReceived.Add(uint64(ft.received))
	}
	if ft.corrupt {
		t.malformed[BadInputChecksum].Add(1)
		t.logs.warn(logKey{badInput: BadInputChecksum + 1}, "internode: file bytes do not match their checksum", "remote", conn.RemoteAddr(), "peer", p.id, "verb", ft.Verb)
	}
	// A verified transfer's bytes and checksum were all read: nothing but
	// the close follows its verdict, whether its handler failed it or not.
	bytesFollow := !ft.verified
	answer(err, bytesFollow)
	if err != nil && bytesFollow {
		// Let the sender read the verdict rather than a reset: stop
		// sending (a TLS connection sends its close_notify; every
		// connection that can close one side does, as the wire doc
		// says), and discard what is still in flight for a moment.
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(conn, 64<<20))
	}
}

func (t *Transport) serveFileHandler(ctx context.Context, h FileHandler, ft *FileTransfer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("internode: file handler panicked", "peer", ft.From, "verb", ft.Verb, "panic", r)
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.ServeFile(ctx, ft)
}

// ReceiveTo writes the transfer's bytes into f at its current offset (at
// its end if f was opened with O_APPEND) and verifies them. On a plain TCP
// connection the kernel splices them from the socket into the file without
// a copy through user space, one chunk at a time, while a second goroutine
// checksums each chunk just written from the page cache (an Unchecked
// transfer is spliced in one call, not in chunks). It returns the bytes
// written; fewer than Length is an error (ErrIncomplete), and so is a
// checksum mismatch (ErrCorrupt). A write to f that fails for want of
// room or of a working disk (ENOSPC, EDQUOT, EFBIG, EROFS, EIO) is
// returned as it is, wrapped but not as ErrIncomplete: the bytes came,
// and the sender, told of it as of a handler's error (ErrHandler), does
// not take it for a cut connection and send them again.
// f must be open for reading too, for the checksum. After a failed
// ReceiveTo it returns that one's error. It takes the whole transfer:
// after bytes taken with Reader, or by an earlier ReceiveTo, it fails,
// not with ErrIncomplete, and returned, that fails the transfer as the
// handler's (ErrHandler).
func (ft *FileTransfer) ReceiveTo(f *os.File) (int64, error) {
	// f must have an offset: the checksum finds the bytes by it.
	_, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if ft.failed != nil {
		// A failed ReceiveTo may have taken bytes it did not write (see
		// below): the rest is not the range, and a second would wait for
		// bytes that never come.
		return 0, ft.failed
	}
	if ft.received != 0 {
		// The handler's use of the transfer, not the connection's: as
		// ErrIncomplete, the sender took it for bytes cut off in transit,
		// and a retry loop sent them again, to be refused again.
		return 0, fmt.Errorf("transport: ReceiveTo after %d of the transfer's %d bytes were taken; receive a transfer with one ReceiveTo, or with Reader", ft.received, ft.Length)
	}
	var crc *crcBehind
	if !ft.Unchecked {
		crc = checksumBehind(context.Background(), f)
	}
	var n int64
	for n < ft.Length && err == nil {
		want := min(ft.chunk, ft.Length-n)
		if crc == nil {
			// Nothing is checksummed behind the reads: each takes all
			// that is left, until its deadline if the sender is slow.
			want = ft.Length - n
		}
		var m int64
		ft.readDeadline()
		began := time.Now()
		if tcp, ok := ft.conn.(*net.TCPConn); ok {
			m, err = f.ReadFrom(io.LimitReader(tcp, want))
		} else {
			m, err = io.CopyN(f, ft.conn, want)
		}
		timedOut := err != nil && isTimeout(err)
		if timedOut && m > 0 {
			// A sender slower than this read's worth in the silence it is
			// allowed, but not silent: read on, in smaller reads.
			err = nil
		}
		if ft.silence > 0 && (timedOut || time.Since(began) > ft.silence/4) {
			ft.chunk = max(ft.chunk/2, minReceiveRead)
		} else {
			ft.chunk = min(2*ft.chunk, ft.maxChunk)
		}
		if m > 0 && crc != nil {
			// The chunk ends at f's offset now, wherever the kernel
			// wrote it: at the file's end if f was opened with O_APPEND,
			// not at the offset ReceiveTo began from.
			end, serr := f.Seek(0, io.SeekCurrent)
			if serr != nil {
				n += m
				err = serr
				break
			}
			crc.add(end-m, m)
		}
		n += m
		if timedOut && err != nil {
			err = fmt.Errorf("the sender sent nothing for %v: %w", ft.silence, err)
		} else if err == nil && m < want && !timedOut {
			err = io.ErrUnexpectedEOF
		}
	}
	var sum checksumResult
	if crc != nil {
		sum = crc.result()
	}
	ft.received = n
	// A ReceiveTo that failed ends the transfer for Reader too: a failed
	// write may have taken bytes from the connection that it did not count
	// in n, and a checksum it could not compute cannot be continued. A
	// Reader that read on and compared its own checksum of the rest with
	// the sender's of the whole range would find intact bytes corrupt,
	// and have them counted and reported as the peer's.
	if err != nil {
		if storageFailed(err) {
			ft.failed = fmt.Errorf("transport: receiving a transfer: %d of %d bytes stored: %w", n, ft.Length, err)
		} else {
			ft.failed = fmt.Errorf("%w: %d of %d bytes: %w", ErrIncomplete, n, ft.Length, err)
		}
		return n, ft.failed
	}
	if sum.err != nil {
		ft.failed = sum.err
		return n, sum.err
	}
	return n, ft.verify(sum.crc)
}

// storageFailed reports whether err, from a write of a transfer's bytes
// to a file, is the file's and not the connection's: a disk that is full,
// over quota or failing, a file too large or read-only.
func storageFailed(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG, syscall.EROFS, syscall.EIO} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// Reader returns the transfer's bytes as a reader, for a handler that does
// not write them to a file. Unless the transfer is Unchecked, it
// computes the checksum as it goes and returns ErrCorrupt instead of the
// final io.EOF when they do not match, and then without the last bytes,
// so that io.ReadFull and io.CopyN of Length bytes fail too. Each call's reader goes on from where the
// previous one stopped; after a failed ReceiveTo it returns its error.
func (ft *FileTransfer) Reader() io.Reader { return &transferReader{ft: ft} }

type transferReader struct{ ft *FileTransfer }

func (r *transferReader) Read(b []byte) (int, error) {
	ft := r.ft
	if ft.failed != nil {
		// ReceiveTo failed, or the checksum did not verify: nothing more
		// can be read or checked (the trailer is not read twice: it would
		// wait the sender's silence for bytes that never come).
		return 0, ft.failed
	}
	left := ft.Length - ft.received
	if left == 0 {
		if !ft.verified {
			if err := ft.verify(ft.readCRC); err != nil {
				return 0, err
			}
		}
		return 0, io.EOF
	}
	if int64(len(b)) > left {
		b = b[:left]
	}
	ft.readDeadline()
	n, err := ft.conn.Read(b)
	ft.received += int64(n)
	if !ft.Unchecked {
		ft.readCRC = crc32.Update(ft.readCRC, castagnoli, b[:n])
	}
	if err != nil && ft.received < ft.Length {
		err = fmt.Errorf("%w: %d of %d bytes: %w", ErrIncomplete, ft.received, ft.Length, err)
		ft.cut = err
	}
	if ft.received == ft.Length && !ft.verified {
		// The last byte: checked now, so that a handler that reads
		// exactly Length (io.ReadFull, io.CopyN) has verified the
		// transfer without reading on to io.EOF.
		if err == nil || err == io.EOF {
			err = ft.verify(ft.readCRC)
		} else {
			err = fmt.Errorf("%w: no checksum after the bytes: %w", ErrIncomplete, err)
			ft.failed = err
		}
		if err != nil {
			// Unverified, the last bytes are withheld: io.ReadFull and
			// io.CopyN drop an error that comes with all the bytes they
			// asked for, and their caller would take corrupt bytes for
			// verified ones.
			return 0, err
		}
	}
	return n, err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newFileLimiter returns the node's file-transfer rate limiter, or nil.
func newFileLimiter(c FileConfig) *rate.Limiter {
	if c.RateLimit <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(c.RateLimit), int(rateLimitedChunk(c)))
}

// rateLimitedChunk is the burst of the node's file-transfer rate limiter,
// the most one chunk asks of it (fileChunk): a second's worth, at least 64
// KiB, and no more than Chunk.
func rateLimitedChunk(c FileConfig) int64 {
	return min(int64(c.Chunk), max(c.RateLimit, minReceiveRead))
}
