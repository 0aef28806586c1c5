package transport

import (
	"context"
	"sync"
	"time"
)

// handlerContext is a handler's context: it ends at the message's
// deadline, when the transport closes (parent, the transport's own
// context, which carries no values), or when cancel is called (the
// handler returned, or its requester sent a cancel).
//
// It does what context.WithDeadline(parent, deadline) does, lazily: that
// makes a context, registers it with its parent under the parent's lock
// (one lock for the whole transport), and arms a timer, for every message,
// while most handlers return without ever waiting on their context. Here
// nothing is made or armed until something asks for Done (a select, a
// context derived from this one, context.AfterFunc); until then Err looks
// at the clock and the parent itself.
type handlerContext struct {
	parent   context.Context
	deadline time.Time // zero: none

	mu    sync.Mutex
	err   error         // set once, by endLocked
	done  chan struct{} // made by the first Done (watch); closed by end
	timer *time.Timer   // armed by watch when there is a deadline
	stop  func() bool   // stops watch's hook on the parent
	// after are the functions AfterFunc was given, not yet called or
	// stopped, by registration.
	after map[uint64]func()
	next  uint64
}

// newHandlerContext returns a handler's context, with its cancel.
func newHandlerContext(parent context.Context, deadline time.Time) (*handlerContext, context.CancelFunc) {
	c := &handlerContext{parent: parent, deadline: deadline}
	return c, func() { c.end(context.Canceled) }
}

func (c *handlerContext) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Value returns nil: the parent, the transport's context, carries no
// values. (Asking it would also answer context.Cause for it, not for c.)
func (c *handlerContext) Value(key any) any { return nil }

func (c *handlerContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchLocked()
	return c.done
}

func (c *handlerContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		// Nothing may watch the deadline or the parent: look.
		if err := c.endedLocked(); err != nil {
			c.endLocked(err)
		}
	}
	return c.err
}

// AfterFunc arranges for f to run in its own goroutine once c ends, as
// context.AfterFunc does. Contexts derived from c find it there
// (context.WithCancel and the like), so that they need no goroutine of
// their own to follow c.
func (c *handlerContext) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchLocked()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	if c.after == nil {
		c.after = make(map[uint64]func())
	}
	c.next++
	id := c.next
	c.after[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.after[id]
		delete(c.after, id)
		return ok
	}
}

// watchLocked makes the done channel, and has the deadline and the
// parent end c from then on. c.mu is held.
func (c *handlerContext) watchLocked() {
	if c.done != nil {
		return
	}
	c.done = make(chan struct{})
	if c.err != nil {
		close(c.done) // ended while nothing watched
		return
	}
	if err := c.endedLocked(); err != nil {
		c.endLocked(err)
		return
	}
	if !c.deadline.IsZero() {
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.end(context.DeadlineExceeded) })
	}
	c.stop = context.AfterFunc(c.parent, func() { c.end(context.Canceled) })
}

// endedLocked reports why c has ended without anyone telling it: its
// deadline passed, or its parent ended.
func (c *handlerContext) endedLocked() error {
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	if c.parent.Err() != nil {
		return context.Canceled
	}
	return nil
}

// end ends c with err, unless it has ended already; a deadline that
// passed before goes first, as its timer would have fired.
func (c *handlerContext) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		if ended := c.endedLocked(); ended != nil {
			err = ended
		}
	}
	c.endLocked(err)
}

// endLocked ends c with err, unless it has ended already: it closes done
// if it was made, lets go of the timer and the parent's hook, and starts
// the functions AfterFunc was given. c.mu is held.
func (c *handlerContext) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
	for id, f := range c.after {
		delete(c.after, id)
		go f()
	}
}
