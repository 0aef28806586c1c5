package raftinternode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// The verbs, as offsets from Options.VerbBase. They are part of the wire
// format between nodes running this adapter.
const (
	offsetAppendEntries  = 0 // Request: AppendEntries outside a pipeline
	offsetHeartbeat      = 1 // Request, urgent lane: AppendEntries without entries
	offsetRequestVote    = 2 // Request, urgent lane
	offsetRequestPreVote = 3 // Request, urgent lane
	offsetTimeoutNow     = 4 // Request, urgent lane
	offsetPipeline       = 5 // Stream: pipelined AppendEntries, in order
	offsetSnapshot       = 6 // Stream: InstallSnapshot header, then the data
)

// DefaultVerbBase is the first of the seven verbs the adapter uses.
const DefaultVerbBase transport.Verb = 0x52414654 // "RAFT"

// Defaults of Options.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultMaxInFlight    = raft.DefaultMaxRPCsInFlight
	DefaultMaxRequestSize = 4 << 20
)

// Options configures a Transport. The zero value means the defaults.
type Options struct {
	// VerbBase is the first of seven consecutive verbs the adapter
	// registers on the internode transport; pick it so that they do not
	// collide with the application's own. Every node must use the same.
	// Default DefaultVerbBase.
	VerbBase transport.Verb
	// Timeout bounds each RPC (InstallSnapshot: each RPC per 256 KiB of
	// snapshot, as NetworkTransport's TimeoutScale, and on the follower
	// too, whose read of the data fails with os.ErrDeadlineExceeded once
	// that bound has passed since the request arrived). Default 10 s.
	Timeout time.Duration
	// MaxInFlight is how many AppendEntries one pipeline may have
	// unanswered (raft.NetworkTransportConfig.MaxRPCsInFlight); below 2,
	// pipelining is off and raft replicates one request at a time.
	// Default 2, NetworkTransport's default.
	MaxInFlight int
	// MaxRequestSize is the largest encoded AppendEntries, in bytes, sent
	// outside a pipeline as a Request; a larger one (raft batches up to
	// MaxAppendEntries entries of any size) goes on a stream of its own,
	// so that it never meets the transport's Memory.MaxMessageSize.
	// Default 4 MiB; keep it at most that MaxMessageSize.
	MaxRequestSize int
}

func (o Options) withDefaults() Options {
	if o.VerbBase == 0 {
		o.VerbBase = DefaultVerbBase
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxRequestSize <= 0 {
		o.MaxRequestSize = DefaultMaxRequestSize
	}
	return o
}

func (o Options) verb(offset transport.Verb) transport.Verb { return o.VerbBase + offset }

// Configure pins the adapter's control verbs (heartbeats, votes,
// TimeoutNow) to the urgent lane in cfg, so that they never queue behind
// AppendEntries, and leaves cfg's other overrides as they are. Call it on
// the config before transport.New. The map is copied, never modified.
func (o Options) Configure(cfg *transport.Config) {
	o = o.withDefaults()
	overrides := maps.Clone(cfg.Lanes.Overrides)
	if overrides == nil {
		overrides = make(map[transport.Verb]routing.Lane)
	}
	for _, off := range []transport.Verb{offsetHeartbeat, offsetRequestVote, offsetRequestPreVote, offsetTimeoutNow} {
		overrides[o.verb(off)] = routing.Urgent
	}
	cfg.Lanes.Overrides = overrides
}

// Transport is a raft.Transport over an internode transport. It is safe for
// concurrent use.
type Transport struct {
	node *transport.Transport
	opts Options

	consumeCh chan raft.RPC

	heartbeatMu sync.Mutex
	heartbeatFn func(raft.RPC)

	mu        sync.Mutex
	pipelines map[*pipeline]struct{}
	closed    bool

	shutdown  chan struct{} // closed by Close
	closeOnce sync.Once

	now func() time.Time // the pipelines' clock: time.Now, or a test's
}

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

// New registers the adapter's handlers on node and returns the raft
// transport. node should have been configured with Options.Configure and
// may be started before or after New. The raft ServerAddress of this node is
// node.NodeID(); Close unregisters the streams but leaves node open: it
// belongs to the caller.
func New(node *transport.Transport, opts Options) *Transport {
	opts = opts.withDefaults()
	t := &Transport{
		node:      node,
		opts:      opts,
		consumeCh: make(chan raft.RPC),
		pipelines: make(map[*pipeline]struct{}),
		shutdown:  make(chan struct{}),
		now:       time.Now,
	}
	node.Handle(opts.verb(offsetAppendEntries), rpcHandler(t, func() any { return new(raft.AppendEntriesRequest) }, false), transport.Named("raft-append"))
	node.Handle(opts.verb(offsetHeartbeat), rpcHandler(t, func() any { return new(raft.AppendEntriesRequest) }, true), transport.Named("raft-heartbeat"))
	node.Handle(opts.verb(offsetRequestVote), rpcHandler(t, func() any { return new(raft.RequestVoteRequest) }, false), transport.Named("raft-vote"))
	node.Handle(opts.verb(offsetRequestPreVote), rpcHandler(t, func() any { return new(raft.RequestPreVoteRequest) }, false), transport.Named("raft-prevote"))
	node.Handle(opts.verb(offsetTimeoutNow), rpcHandler(t, func() any { return new(raft.TimeoutNowRequest) }, false), transport.Named("raft-timeout-now"))
	node.HandleStream(opts.verb(offsetPipeline), transport.StreamHandlerFunc(t.servePipeline))
	node.HandleStream(opts.verb(offsetSnapshot), transport.StreamHandlerFunc(t.serveSnapshot))
	return t
}

// Consumer implements raft.Transport.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr implements raft.Transport: the internode node ID.
func (t *Transport) LocalAddr() raft.ServerAddress { return raft.ServerAddress(t.node.NodeID()) }

// EncodePeer implements raft.Transport.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (t *Transport) DecodePeer(buf []byte) raft.ServerAddress { return raft.ServerAddress(buf) }

// SetHeartbeatHandler implements raft.Transport.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.heartbeatMu.Lock()
	t.heartbeatFn = cb
	t.heartbeatMu.Unlock()
}

// Close stops serving raft: RPCs waiting for raft fail, pipelines close
// (those this transport opened and those leaders opened to it) and the
// stream handlers are removed. The internode transport stays open. Safe
// to call more than once.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.shutdown)
		t.node.HandleStream(t.opts.verb(offsetPipeline), nil)
		t.node.HandleStream(t.opts.verb(offsetSnapshot), nil)
		t.mu.Lock()
		t.closed = true
		pipes := make([]*pipeline, 0, len(t.pipelines))
		for p := range t.pipelines {
			pipes = append(pipes, p)
		}
		t.mu.Unlock()
		for _, p := range pipes {
			_ = p.Close()
		}
	})
	return nil
}

// AppendEntries implements raft.Transport. An AppendEntries without entries
// or commit index — raft's heartbeat — goes on the urgent lane; one above
// Options.MaxRequestSize on a stream.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	verb := offsetAppendEntries
	if isHeartbeat(args) {
		verb = offsetHeartbeat
	}
	payload, err := encodeAppend(nil, args)
	if err != nil {
		return err
	}
	if len(payload) > t.opts.MaxRequestSize {
		return t.appendOnStream(target, payload, resp)
	}
	return t.request(target, t.opts.verb(transport.Verb(verb)), payload, resp)
}

// appendOnStream sends one encoded AppendEntries on a stream of the
// pipeline's verb, whose follower end answers it like any pipelined one.
func (t *Transport) appendOnStream(target raft.ServerAddress, payload []byte, resp *raft.AppendEntriesResponse) error {
	if err := t.closedErr(); err != nil {
		return err
	}
	if int64(1+len(payload)) > maxFrame {
		return errFrameTooLarge
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.Timeout)
	defer cancel()
	s, err := t.node.OpenStream(ctx, cluster.NodeID(target), t.opts.verb(offsetPipeline))
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(t.opts.Timeout))
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, frameHeaderLen), uint32(1+len(payload)))
	frame = append(frame, statusOK)
	if _, err := (&net.Buffers{frame, payload}).WriteTo(s); err != nil {
		return err
	}
	status, body, _, err := readFrame(newReader(s), nil)
	if err != nil {
		return err
	}
	return decodeFrame(status, body, resp)
}

// RequestVote implements raft.Transport.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.call(target, t.opts.verb(offsetRequestVote), args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.call(target, t.opts.verb(offsetRequestPreVote), args, resp)
}

// TimeoutNow implements raft.Transport.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.call(target, t.opts.verb(offsetTimeoutNow), args, resp)
}

// isHeartbeat is NetworkTransport's test for raft's heartbeat.
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	//lint:ignore SA1019 NetworkTransport's test reads Leader too, which raft still fills for its older versions
	return a.Term != 0 && (len(a.Addr) != 0 || len(a.Leader) != 0) &&
		a.PrevLogEntry == 0 && a.PrevLogTerm == 0 &&
		len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// call is one RPC as an internode Request: msgpack both ways.
func (t *Transport) call(target raft.ServerAddress, verb transport.Verb, args, resp any) error {
	payload, err := encodeAppend(nil, args)
	if err != nil {
		return err
	}
	return t.request(target, verb, payload, resp)
}

// request sends an encoded RPC and decodes its response into resp.
func (t *Transport) request(target raft.ServerAddress, verb transport.Verb, payload []byte, resp any) error {
	if err := t.closedErr(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.Timeout)
	defer cancel()
	out, err := t.node.Request(ctx, cluster.NodeID(target), verb, payload)
	if err != nil {
		return err
	}
	return decode(out, resp)
}

// dispatch hands rpc to raft — the heartbeat handler when it is one and
// raft set one, else the consumer channel — and waits for raft's answer.
func (t *Transport) dispatch(ctx context.Context, rpc raft.RPC, respCh <-chan raft.RPCResponse, heartbeat bool) (raft.RPCResponse, error) {
	if heartbeat {
		t.heartbeatMu.Lock()
		fn := t.heartbeatFn
		t.heartbeatMu.Unlock()
		if fn != nil {
			fn(rpc)
			return t.await(ctx, respCh)
		}
	}
	select {
	case t.consumeCh <- rpc:
	case <-ctx.Done():
		return raft.RPCResponse{}, ctx.Err()
	case <-t.shutdown:
		return raft.RPCResponse{}, raft.ErrTransportShutdown
	}
	return t.await(ctx, respCh)
}

func (t *Transport) await(ctx context.Context, respCh <-chan raft.RPCResponse) (raft.RPCResponse, error) {
	select {
	case r := <-respCh:
		return r, nil
	case <-ctx.Done():
		return raft.RPCResponse{}, ctx.Err()
	case <-t.shutdown:
		return raft.RPCResponse{}, raft.ErrTransportShutdown
	}
}

// rpcHandler serves one Request verb: decode, hand to raft, encode raft's
// response. raft's error travels as the handler's error (ErrHandler at the
// caller, with its text).
func rpcHandler(t *Transport, newReq func() any, heartbeat bool) transport.Handler {
	return transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		req := newReq()
		if err := decode(m.Payload, req); err != nil {
			return nil, err
		}
		// The verb is the sender's word; raft runs its heartbeat handler
		// beside the main loop, which is safe for a heartbeat's content
		// only, so the content decides, as in NetworkTransport.
		fast := heartbeat && isHeartbeat(req.(*raft.AppendEntriesRequest))
		respCh := make(chan raft.RPCResponse, 1)
		rpc := raft.RPC{Command: req, RespChan: respCh}
		r, err := t.dispatch(ctx, rpc, respCh, fast)
		if err != nil {
			return nil, err
		}
		if r.Error != nil {
			return nil, r.Error
		}
		return encodeAppend(nil, r.Response)
	})
}

// closedErr is raft.ErrTransportShutdown once Close was called.
func (t *Transport) closedErr() error {
	select {
	case <-t.shutdown:
		return raft.ErrTransportShutdown
	default:
		return nil
	}
}

// InstallSnapshot implements raft.Transport: the request, then data, on a
// stream of their own, so that a snapshot of any size passes through
// without being held in memory.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if err := t.closedErr(); err != nil {
		return err
	}
	timeout := t.snapshotTimeout(args.Size)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := t.node.OpenStream(ctx, cluster.NodeID(target), t.opts.verb(offsetSnapshot), transport.OwnConnection())
	if err != nil {
		return err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(timeout))
	head, err := appendFrame(nil, args)
	if err != nil {
		return err
	}
	if _, err := s.Write(head); err != nil {
		return err
	}
	w := &snapshotWriter{s: s}
	if n, err := io.CopyN(w, data, args.Size); err != nil {
		err = fmt.Errorf("raftinternode: snapshot data: %d of %d bytes: %w", n, args.Size, err)
		if w.err != nil {
			return refusalOr(s, err)
		}
		return err
	}
	if err := s.CloseWrite(); err != nil {
		return refusalOr(s, err)
	}
	status, body, _, err := readFrame(newReader(s), nil)
	if err != nil {
		return err
	}
	return decodeFrame(status, body, resp)
}

// snapshotTimeout bounds an InstallSnapshot of size bytes, on both ends:
// Options.Timeout per 256 KiB (raft.DefaultTimeoutScale), as
// NetworkTransport's, and never less than Options.Timeout.
func (t *Transport) snapshotTimeout(size int64) time.Duration {
	return max(t.opts.Timeout*time.Duration(size/raft.DefaultTimeoutScale), t.opts.Timeout)
}

// snapshotWriter is the stream InstallSnapshot copies the data to; it
// keeps the stream's error, to tell it from the data's.
type snapshotWriter struct {
	s   *transport.Stream
	err error
}

func (w *snapshotWriter) Write(b []byte) (int, error) {
	n, err := w.s.Write(b)
	if err != nil {
		w.err = err
	}
	return n, err
}

// refusalOr is the follower's error when it answered before InstallSnapshot
// had written everything, else err, the write's failure. A follower that
// refuses a snapshot without reading its data answers with its error and
// closes its end, and the leader's next write fails; the answer came
// before the close, so the leader reads it, as NetworkTransport hands the
// leader the follower's error. A write that timed out is not followed by
// a read, which would wait for a follower that is slow, not gone; after
// any other failure the connection is closed or reset, and the read
// returns at once.
func refusalOr(s *transport.Stream, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	status, body, _, rerr := readFrame(newReader(s), nil)
	if rerr != nil || status != statusError {
		return err
	}
	return decodeFrame(status, body, nil)
}

// serveSnapshot is the receiving end of InstallSnapshot: raft reads the
// data straight from the stream. Close ends it, as it ends a pipeline
// served to a leader: a leader that opened the stream and stalled before
// its request is not waited for (dispatch watches for Close only once the
// request is read).
func (t *Transport) serveSnapshot(ctx context.Context, s *transport.Stream) {
	defer t.closeOnShutdown(s)()
	r := newReader(s)
	status, body, _, err := readFrame(r, nil)
	if err != nil || status != statusOK {
		return
	}
	var req raft.InstallSnapshotRequest
	if err := decode(body, &req); err != nil {
		_, _ = s.Write(appendErrorFrame(nil, err))
		return
	}
	// raft reads the data in its follower loop: a leader that stalls
	// mid-snapshot, or whose host went without a word, would hold that
	// loop (no votes, no elections) until TCP keep-alive gave up. The
	// leader's own bound on the transfer, counted from here, later than
	// the leader counts it, ends the read with os.ErrDeadlineExceeded.
	_ = s.SetReadDeadline(time.Now().Add(t.snapshotTimeout(req.Size)))
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: &req, Reader: io.LimitReader(r, req.Size), RespChan: respCh}
	res, err := t.dispatch(ctx, rpc, respCh, false)
	if err == nil {
		err = res.Error
	}
	var frame []byte
	if err != nil {
		frame = appendErrorFrame(nil, err)
	} else if frame, err = appendFrame(nil, res.Response); err != nil {
		frame = appendErrorFrame(nil, err)
	}
	_, _ = s.Write(frame)
	_ = s.CloseWrite()
}
