package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/internode/internode/cluster"
)

// QuorumError is a write that did not reach its quorum: too many replicas
// failed, or the caller's context ended first. errors.Is and errors.As see
// every replica's error (for example transport.ErrOverloaded) and the
// context's.
type QuorumError struct {
	Need, Acked int
	// Failures holds each failed replica's error, in the order they
	// failed.
	Failures []ReplicaError
	// Err is the context's error when the caller stopped waiting; else nil.
	Err error
}

// ReplicaError is one replica's failure.
type ReplicaError struct {
	Replica cluster.NodeID
	Err     error
}

func (e *QuorumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replication: quorum not reached: %d of %d acks", e.Acked, e.Need)
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	for _, f := range e.Failures {
		fmt.Fprintf(&b, "; %s: %v", f.Replica, f.Err)
	}
	return b.String()
}

// Unwrap returns the replicas' errors and the context's.
func (e *QuorumError) Unwrap() []error {
	errs := make([]error, 0, len(e.Failures)+1)
	for _, f := range e.Failures {
		errs = append(errs, f.Err)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Quorum calls call once for each replica, concurrently, and returns nil as
// soon as need calls succeeded; or a *QuorumError as soon as so many failed
// that need can no longer succeed, or when ctx ends. Calls still running
// when Quorum returns go on until they return by themselves: call decides
// how long that is (Replicator bounds each with its Timeout).
func Quorum(ctx context.Context, replicas []cluster.NodeID, need int, call func(replica cluster.NodeID) error) error {
	if need > len(replicas) {
		return fmt.Errorf("%w: %d replicas for a quorum of %d", ErrUnavailable, len(replicas), need)
	}
	if need <= 0 {
		return errors.New("replication: quorum must be positive")
	}
	type result struct {
		replica cluster.NodeID
		err     error
	}
	// Buffered for every call, so stragglers never block once Quorum has
	// returned.
	results := make(chan result, len(replicas))
	for _, r := range replicas {
		go func() { results <- result{replica: r, err: call(r)} }()
	}
	qe := &QuorumError{Need: need}
	for range replicas {
		select {
		case res := <-results:
			if res.err == nil {
				qe.Acked++
				if qe.Acked == need {
					return nil
				}
				continue
			}
			qe.Failures = append(qe.Failures, ReplicaError{Replica: res.replica, Err: res.err})
			if len(replicas)-len(qe.Failures) < need {
				return qe
			}
		case <-ctx.Done():
			qe.Err = ctx.Err()
			return qe
		}
	}
	return qe // unreachable: every result either reaches need or rules it out
}
