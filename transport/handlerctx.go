package transport

import (
	"context"
	"sync"
	"time"
)

// handlerContext is a handler's context: it ends at the message's
// deadline, when the transport closes (parent, the transport's own
// context, which carries no values), or when its cancel is called (the
// handler returned, its requester sent a cancel, or a request's connection
// ended).
//
// It is context.WithDeadline(parent, deadline), made lazily. Made for
// every message, that context registers with its parent under the
// parent's lock (one lock for the whole transport) and arms a timer,
// while most handlers return without ever waiting on their context. Here
// nothing is made until something asks for Done (a select, a context
// derived from this one, context.AfterFunc); until then Err looks at the
// clock and the parent itself, and Value finds nothing. Once made, the
// inner context does the rest, so contexts derived from this one are
// registered with it as with any other, and end when it does, before its
// cancel returns.
type handlerContext struct {
	parent   context.Context
	deadline time.Time // as the message has it (wall clock); zero: none
	expires  time.Time // the same moment on the monotonic clock

	mu     sync.Mutex
	err    error           // how it ended, seen before anything watched
	inner  context.Context // made by watchLocked
	cancel context.CancelFunc
}

// newHandlerContext returns a handler's context ending at deadline (zero:
// none), read against now, and its cancel. As context.WithDeadline does,
// it measures the time left from now on the monotonic clock, which a
// step of the wall clock does not move.
func newHandlerContext(parent context.Context, deadline, now time.Time) (*handlerContext, context.CancelFunc) {
	c := &handlerContext{parent: parent, deadline: deadline}
	if !deadline.IsZero() {
		c.expires = now.Add(deadline.Sub(now))
	}
	return c, c.end
}

func (c *handlerContext) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *handlerContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watchLocked().Done()
}

func (c *handlerContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil {
		return c.inner.Err()
	}
	if c.err == nil {
		c.err = c.endedLocked() // nothing watches the deadline or the parent: look
	}
	return c.err
}

// Value returns the inner context's values once it is made: the context
// package finds its own bookkeeping there. Before that there are none:
// the parent carries no values.
func (c *handlerContext) Value(key any) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		return nil
	}
	return c.inner.Value(key)
}

// watchLocked makes the inner context, unless made, and returns it. One
// made after c ended ends as c did. c.mu is held.
func (c *handlerContext) watchLocked() context.Context {
	if c.inner != nil {
		return c.inner
	}
	if c.err == nil {
		c.err = c.endedLocked()
	}
	switch {
	case c.err != nil:
		c.inner, c.cancel = endedContext{c.err}, func() {}
	case c.expires.IsZero():
		c.inner, c.cancel = context.WithCancel(c.parent)
	default:
		c.inner, c.cancel = context.WithDeadline(c.parent, c.expires)
	}
	return c.inner
}

// endedLocked reports why c has ended without anyone telling it: its
// deadline passed, or its parent ended; nil if neither.
func (c *handlerContext) endedLocked() error {
	if !c.expires.IsZero() && !time.Now().Before(c.expires) {
		return context.DeadlineExceeded
	}
	if c.parent.Err() != nil {
		return context.Canceled
	}
	return nil
}

// end is c's cancel.
func (c *handlerContext) end() {
	c.mu.Lock()
	if c.inner == nil {
		if c.err == nil {
			if c.err = c.endedLocked(); c.err == nil {
				c.err = context.Canceled
			}
		}
		c.mu.Unlock()
		return
	}
	cancel := c.cancel
	c.mu.Unlock()
	cancel() // outside c.mu: it ends the contexts derived from the inner one
}

// endedContext is the inner context of a handlerContext that ended before
// anything watched it.
type endedContext struct{ err error }

func (endedContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (endedContext) Done() <-chan struct{}       { return closedChan }
func (e endedContext) Err() error                { return e.err }
func (endedContext) Value(any) any               { return nil }

// closedChan is closed from the start.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()
