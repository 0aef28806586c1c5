package replication

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// ErrUnavailable is returned by Write (and Quorum) when fewer replicas
// exist than the quorum needs: no message is sent.
var ErrUnavailable = errors.New("replication: not enough replicas")

// Defaults used by New.
const (
	DefaultFactor  = 3
	DefaultTimeout = 2 * time.Second
)

// Requester is the part of *transport.Transport a Replicator uses.
type Requester interface {
	Request(ctx context.Context, to cluster.NodeID, verb transport.Verb, payload []byte) ([]byte, error)
}

var _ Requester = (*transport.Transport)(nil)

// Config configures a Replicator. Self and Requester are required.
type Config struct {
	// Self is this node's ID.
	Self cluster.NodeID
	// Requester sends the writes: usually the node's *transport.Transport.
	Requester Requester
	// Local is this node's replica. Writes of keys that Self owns are
	// applied to it directly; if nil, Self is never chosen as a replica.
	Local *Store
	// Factor is how many replicas each key has. Default 3.
	Factor int
	// Quorum is how many of them must acknowledge a write. Default a
	// majority of Factor (2 of 3); at most Factor.
	Quorum int
	// Timeout bounds each replica's request, including those still running
	// after Write returned. Default 2 s.
	Timeout time.Duration
	// Now stamps writes. Default time.Now. A reading no later than the
	// previous write's stamp is stamped one nanosecond after it, so that
	// a coordinator's later write of a key wins over its earlier one on a
	// clock that stands still or steps back.
	Now func() time.Time
	// OnReply, if set, is called once for every replica of every write,
	// with its outcome, including replicas that answer after Write
	// returned. It runs on the request's goroutine and must be quick.
	OnReply func(Reply)
}

// Reply is one replica's outcome for one write.
type Reply struct {
	Replica cluster.NodeID
	Local   bool // applied locally, no message
	Size    int  // the encoded request's size, bytes
	Latency time.Duration
	Err     error // nil: acknowledged
}

// Counts are a Replicator's request counters. Only remote replicas count:
// a local apply sends no message.
type Counts struct {
	Requests uint64 // Request calls started
	Acked    uint64 // returned a response
	Failed   uint64 // returned an error
	Local    uint64 // writes applied to Config.Local
}

// InFlight is the number of requests started that have not returned.
func (c Counts) InFlight() uint64 { return c.Requests - c.Acked - c.Failed }

// Replicator coordinates writes. It is safe for concurrent use.
type Replicator struct {
	cfg Config

	// Replica calls running, Write's stragglers included. Not a
	// WaitGroup: Write may add calls while Drain waits, which a WaitGroup
	// forbids (it panics).
	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight falls to 0

	requests, acked, failed, local atomic.Uint64
	lastStamp                      atomic.Uint64 // the latest write's timestamp
}

// New returns a Replicator for cfg, with defaults filled into its own copy.
func New(cfg Config) (*Replicator, error) {
	if cfg.Self == "" || cfg.Requester == nil {
		return nil, errors.New("replication: Config needs Self and Requester")
	}
	if cfg.Factor <= 0 {
		cfg.Factor = DefaultFactor
	}
	if cfg.Quorum <= 0 {
		cfg.Quorum = cfg.Factor/2 + 1
	}
	if cfg.Quorum > cfg.Factor {
		return nil, errors.New("replication: Quorum exceeds Factor")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Replicator{cfg: cfg}, nil
}

// Write replicates key=value to the Factor members that own it and returns
// once Quorum of them acknowledged (nil), or with ErrUnavailable or a
// *QuorumError. members are the live nodes, Self included.
//
// The transport may hold value until it is written, after Write returns:
// do not modify it. Replicas slower than the quorum keep their requests
// running in the background; Drain waits for them.
func (r *Replicator) Write(ctx context.Context, members []cluster.NodeID, key string, value []byte) error {
	candidates := members
	if r.cfg.Local == nil {
		candidates = make([]cluster.NodeID, 0, len(members))
		for _, m := range members {
			if m != r.cfg.Self {
				candidates = append(candidates, m)
			}
		}
	}
	replicas := Replicas(key, candidates, r.cfg.Factor)
	if len(replicas) < r.cfg.Quorum {
		return ErrUnavailable
	}
	m := Mutation{Timestamp: r.stamp(), Key: key, Value: value}
	payload := AppendMutation(nil, m) // shared by the replicas, never modified
	// The replicas' requests outlive Write when the quorum answers first:
	// they must not be cancelled by the caller's return, only bounded.
	detached := context.WithoutCancel(ctx)
	r.started(len(replicas))
	return Quorum(ctx, replicas, r.cfg.Quorum, func(replica cluster.NodeID) error {
		defer r.finished()
		return r.replicate(detached, replica, m, payload)
	})
}

// stamp returns a timestamp for a new write: the clock's reading, or one
// nanosecond after the previous write's if the clock has not moved past
// it. Of two writes with the same timestamp the larger value wins, and of
// two with different ones the later stamped: without this a key written
// twice within the clock's tick, or across a step back, kept the first.
func (r *Replicator) stamp() uint64 {
	now := uint64(r.cfg.Now().UnixNano())
	for {
		last := r.lastStamp.Load()
		next := max(now, last+1)
		if r.lastStamp.CompareAndSwap(last, next) {
			return next
		}
	}
}

// replicate sends one write to one replica, or applies it locally.
func (r *Replicator) replicate(ctx context.Context, replica cluster.NodeID, m Mutation, payload []byte) error {
	start := time.Now()
	reply := Reply{Replica: replica, Size: len(payload)}
	if replica == r.cfg.Self {
		r.cfg.Local.Apply(m)
		r.local.Add(1)
		reply.Local = true
	} else {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		r.requests.Add(1)
		_, reply.Err = r.cfg.Requester.Request(ctx, replica, Verb, payload)
		if reply.Err != nil {
			r.failed.Add(1)
		} else {
			r.acked.Add(1)
		}
	}
	reply.Latency = time.Since(start)
	if r.cfg.OnReply != nil {
		r.cfg.OnReply(reply)
	}
	return reply.Err
}

// Counts returns the request counters so far.
func (r *Replicator) Counts() Counts {
	// Read the outcomes before the starts, so a request finishing meanwhile
	// is never seen finished but not started.
	acked, failed := r.acked.Load(), r.failed.Load()
	return Counts{Requests: r.requests.Load(), Acked: acked, Failed: failed, Local: r.local.Load()}
}

// started counts n replica calls about to run.
func (r *Replicator) started(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight == 0 {
		r.idle = make(chan struct{})
	}
	r.inflight += n
}

// finished counts one replica call returned.
func (r *Replicator) finished() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight--; r.inflight == 0 {
		close(r.idle)
	}
}

// Drain waits until every replica request started by Write has returned,
// or until ctx ends (then it returns ctx.Err() and the requests go on).
// Writes may go on meanwhile: it returns once none is running.
func (r *Replicator) Drain(ctx context.Context) error {
	r.mu.Lock()
	if r.inflight == 0 {
		r.mu.Unlock()
		return nil
	}
	idle := r.idle
	r.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
