package raftinternode

import (
	"bufio"
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// The append pipeline keeps raft's AppendEntries in order whatever their
// size. Requests would not: a verb's requests run in a stage of concurrent
// handlers, and a batch above the large threshold takes another lane than
// a small one. So a pipeline is one internode stream (ordered bytes): the
// leader writes framed requests, the follower reads them one after another,
// hands each to raft, and writes the responses back in the same order; the
// leader matches each response to the oldest request awaiting one.

const readBufferSize = 64 << 10

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, readBufferSize) }

// AppendEntriesPipeline implements raft.Transport. It returns
// raft.ErrPipelineReplicationNotSupported when Options.MaxInFlight is
// below 2, as NetworkTransport does, and raft.ErrTransportShutdown after
// Close, without dialling, as the RPCs do.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if t.opts.MaxInFlight < 2 {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	if err := t.closedErr(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.Timeout)
	defer cancel()
	s, err := t.node.OpenStream(ctx, cluster.NodeID(target), t.opts.verb(offsetPipeline), transport.OwnConnection())
	if err != nil {
		return nil, err
	}
	p := &pipeline{
		t:        t,
		s:        s,
		epoch:    t.now(),
		slots:    make(chan struct{}, t.opts.MaxInFlight),
		inflight: make(chan *appendFuture, t.opts.MaxInFlight),
		answered: make(chan struct{}, 1),
		done:     make(chan raft.AppendFuture, t.opts.MaxInFlight),
		shutdown: make(chan struct{}),
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = s.Close()
		return nil, raft.ErrTransportShutdown
	}
	t.pipelines[p] = struct{}{}
	t.mu.Unlock()
	p.progress.Store(p.mark())
	p.wg.Add(3)
	go p.readResponses()
	go p.deliver()
	go p.watch()
	return p, nil
}

// pipeline is the leader's end of one append pipeline. AppendEntries is
// called by one goroutine of raft's at a time; the reader and the delivery
// goroutines are the pipeline's and Close waits for them.
//
// MaxInFlight bounds the requests written and not yet answered, and only
// those: answered ones wait for raft in a queue without bound. raft stops
// reading Consumer (after a failed AppendEntries) before it stops sending,
// and only closes the pipeline once AppendEntries has returned; were the
// answered requests to hold slots too, AppendEntries would wait for ever.
type pipeline struct {
	t        *Transport
	s        *transport.Stream
	wbuf     []byte             // the frame being written; only AppendEntries uses it
	slots    chan struct{}      // one per request written and not yet answered
	inflight chan *appendFuture // written, in order, for the reader
	done     chan raft.AppendFuture

	// progress is when (a mark) a request, or a part of one, was last
	// written or a response read; watch closes the stream when requests
	// wait and there has been none for Options.Timeout.
	progress atomic.Int64
	epoch    time.Time // the origin of marks, with its monotonic reading
	writing  atomic.Bool

	mu       sync.Mutex
	closed   bool            // Close failed what inflight held; no more go in
	ready    []*appendFuture // answered, waiting for room in done
	queued   int             // answered and not yet in done: ready and deliver's batch
	answered chan struct{}   // one slot: ready has grown

	shutdown  chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// AppendEntries implements raft.AppendPipeline: it writes the request and
// returns; the response arrives on Consumer. It waits while MaxInFlight
// requests are unanswered.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	var err error
	if p.wbuf, err = appendFrame(p.wbuf[:0], args); err != nil {
		return nil, err
	}
	if len(p.slots) == 0 {
		// Idle: nothing was waiting, so the watch's clock starts now, before
		// the slot makes the pipeline busy. (Only this goroutine adds slots.)
		p.progress.Store(p.mark())
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.shutdown:
		return nil, raft.ErrPipelineShutdown
	}
	p.progress.Store(p.mark()) // an idle pipeline waited for nothing
	p.writing.Store(true)
	// In parts, each one progress: a large batch that goes out steadily
	// is not one that has not moved for a Timeout.
	for b := p.wbuf; len(b) > 0 && err == nil; {
		n := min(len(b), pipelineWritePart)
		_, err = p.s.Write(b[:n])
		b = b[n:]
		p.progress.Store(p.mark())
	}
	p.writing.Store(false)
	if err != nil {
		<-p.slots
		return nil, err
	}
	p.progress.Store(p.mark())
	if cap(p.wbuf) > 1<<20 {
		p.wbuf = nil // a large batch's buffer is not kept for the small ones
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.inflight <- f // never blocks: it holds at most one per slot
	}
	p.mu.Unlock()
	if closed {
		// Close came during the write: no reader will answer it.
		<-p.slots
		return nil, raft.ErrPipelineShutdown
	}
	return f, nil
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close implements raft.AppendPipeline: the stream closes, requests not yet
// answered fail. Safe to call more than once; it waits for the reader.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		close(p.shutdown)
		_ = p.s.Close()
		p.wg.Wait()
		p.failUnanswered()
		p.t.mu.Lock()
		delete(p.t.pipelines, p)
		p.t.mu.Unlock()
	})
	return nil
}

// failUnanswered fails the requests written that the reader, gone with
// Close, left unanswered: their futures' Error would wait for ever.
func (p *pipeline) failUnanswered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for {
		select {
		case f := <-p.inflight:
			*f.resp = raft.AppendEntriesResponse{}
			f.respond(raft.ErrPipelineShutdown)
		default:
			return
		}
	}
}

// readResponses reads the responses in request order and completes the
// oldest request's future with each.
func (p *pipeline) readResponses() {
	defer p.wg.Done()
	r := newReader(p.s)
	var buf []byte
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.shutdown:
			return
		}
		status, body, b, err := readFrame(r, buf)
		buf = b
		p.progress.Store(p.mark())
		if err == nil {
			err = decodeFrame(status, body, f.resp)
		}
		if err != nil {
			// raft reads a pipelined Response without calling Error: a
			// failed one must say no Success, nor a Term misread from a
			// response that decoded halfway. An error frame carries no
			// response, so the follower's Term is lost too; raft
			// (v1.8.0) loses nothing by it: its follower answers an
			// AppendEntries with an error only once the request's term
			// is its own, and the leader steps down only for a Term
			// above its request's.
			*f.resp = raft.AppendEntriesResponse{}
		}
		f.respond(err)
		<-p.slots
		p.hand(f)
	}
}

// hand gives raft an answered request: straight into done when nothing
// waits before it and there is room, else through deliver.
func (p *pipeline) hand(f *appendFuture) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queued == 0 {
		select {
		case p.done <- f:
			return
		default:
		}
	}
	p.ready = append(p.ready, f)
	p.queued++
	select {
	case p.answered <- struct{}{}:
	default:
	}
}

// mark is the time since the pipeline opened, in nanoseconds, on the
// monotonic clock (time.Time.Sub uses it when both readings have it):
// unlike a wall-clock reading, a step of the system clock does not move
// it, so it neither hides a silent follower nor times out a healthy one.
func (p *pipeline) mark() int64 { return int64(p.t.now().Sub(p.epoch)) }

// pipelineWritePart is how much of a request AppendEntries writes between
// two marks of progress for watch.
const pipelineWritePart = 256 << 10

// watch is the pipeline's timeout. Deadlines on the stream would cost a
// timer for every read and write; instead, every quarter of
// Options.Timeout, watch closes the stream if requests are written or
// unanswered and nothing has moved for a whole Timeout (a part of a
// request written, a response read), failing them as NetworkTransport's
// deadlines would.
func (p *pipeline) watch() {
	defer p.wg.Done()
	// At least a nanosecond: NewTicker panics at zero, the quarter of a
	// Timeout of 1 to 3 ns.
	tick := time.NewTicker(max(p.t.opts.Timeout/4, time.Nanosecond))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-p.shutdown:
			return
		}
		busy := p.writing.Load() || len(p.slots) > 0
		idle := time.Duration(p.mark() - p.progress.Load())
		if busy && idle > p.t.opts.Timeout {
			_ = p.s.Close()
		}
	}
}

// deliver hands the answered requests to raft, in order.
func (p *pipeline) deliver() {
	defer p.wg.Done()
	for {
		select {
		case <-p.answered:
		case <-p.shutdown:
			return
		}
		p.mu.Lock()
		batch := p.ready
		p.ready = nil
		p.mu.Unlock()
		for _, f := range batch {
			select {
			case p.done <- f:
			case <-p.shutdown:
				return
			}
			p.mu.Lock()
			p.queued--
			p.mu.Unlock()
		}
	}
}

// appendFuture is a raft.AppendFuture.
type appendFuture struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error
	done  chan struct{}
}

func (f *appendFuture) respond(err error) {
	f.err = err
	close(f.done)
}

func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }

// maxPendingResponses bounds the requests a follower's pipeline has handed
// to raft and not yet answered on the stream.
const maxPendingResponses = 64

// servePipeline is the follower's end: one goroutine reads and hands
// requests to raft in order, a second writes raft's responses in the same
// order. Close ends it: a third closes the stream when the transport
// shuts down, which ends the reader's wait for the leader's next request.
func (t *Transport) servePipeline(ctx context.Context, s *transport.Stream) {
	pending := make(chan chan raft.RPCResponse, maxPendingResponses)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.writeResponses(ctx, s, pending)
	}()
	defer wg.Wait()
	defer t.closeOnShutdown(s)()
	defer close(pending)

	r := newReader(s)
	var buf []byte
	for {
		status, body, b, err := readFrame(r, buf)
		buf = b
		if err != nil || status != statusOK {
			return
		}
		req := new(raft.AppendEntriesRequest)
		if err := decode(body, req); err != nil {
			return
		}
		if cap(buf) > 1<<20 {
			buf = nil // decode copied it; a large batch's buffer is not kept for the small ones
		}
		respCh := make(chan raft.RPCResponse, 1)
		select {
		case t.consumeCh <- raft.RPC{Command: req, RespChan: respCh}:
		case <-ctx.Done():
			return
		case <-t.shutdown:
			return
		}
		select {
		case pending <- respCh:
		case <-ctx.Done():
			return
		}
	}
}

// closeOnShutdown closes s, a stream a leader opened to this node, if the
// transport shuts down before the returned stop is called; stop waits
// for a close under way. It ends a wait for the leader's next request,
// which nothing else watches.
func (t *Transport) closeOnShutdown(s *transport.Stream) (stop func()) {
	served, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-t.shutdown:
			_ = s.Close()
		case <-served:
		}
	}()
	return func() {
		close(served)
		<-done
	}
}

func (t *Transport) writeResponses(ctx context.Context, s *transport.Stream, pending <-chan chan raft.RPCResponse) {
	var frame []byte
	broken := false
	for respCh := range pending {
		if broken {
			continue // drain, so that the reader never blocks on pending
		}
		res, err := t.await(ctx, respCh)
		if err == nil {
			err = res.Error
		}
		frame = frame[:0]
		if err != nil {
			frame = appendErrorFrame(frame, err)
		} else if frame, err = appendFrame(frame, res.Response); err != nil {
			frame = appendErrorFrame(frame[:0], err)
		}
		if _, err := s.Write(frame); err != nil {
			broken = true
			_ = s.Close()
		}
	}
}
