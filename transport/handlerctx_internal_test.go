package transport

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHandlerContextEndsAtItsDeadline: watched or not, a handler's
// context ends at its deadline as context.WithDeadline's would, with
// DeadlineExceeded as its error and its cause.
func TestHandlerContextEndsAtItsDeadline(t *testing.T) {
	for _, watched := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			deadline := time.Now().Add(time.Second)
			c, cancel := newHandlerContext(context.Background(), deadline, time.Now())
			defer cancel()
			d, ok := c.Deadline()
			assert.True(t, ok)
			assert.Equal(t, deadline, d)
			var done <-chan struct{}
			if watched {
				done = c.Done()
				assert.False(t, chanClosed(done))
			}
			assert.NoError(t, c.Err())
			time.Sleep(999 * time.Millisecond)
			synctest.Wait()
			if watched {
				assert.False(t, chanClosed(done), "a millisecond early")
			}
			assert.NoError(t, c.Err(), "a millisecond early")
			time.Sleep(time.Millisecond)
			synctest.Wait()
			if watched {
				assert.True(t, chanClosed(done), "its timer closed Done")
			}
			assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
			assert.True(t, chanClosed(c.Done()), "Done is closed once Err is set, even when first asked after")
			assert.ErrorIs(t, context.Cause(c), context.DeadlineExceeded)
			cancel()
			assert.ErrorIs(t, c.Err(), context.DeadlineExceeded, "a later cancel changes nothing")
		})
	}
}

// TestHandlerContextFollowsItsParent: the transport's context ending (it
// closes) ends its handlers' contexts, watched or not.
func TestHandlerContextFollowsItsParent(t *testing.T) {
	for _, watched := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			parent, closeParent := context.WithCancel(context.Background())
			c, cancel := newHandlerContext(parent, time.Time{}, time.Now())
			defer cancel()
			_, ok := c.Deadline()
			assert.False(t, ok)
			var done <-chan struct{}
			if watched {
				done = c.Done()
			}
			closeParent()
			synctest.Wait()
			if watched {
				assert.True(t, chanClosed(done))
			}
			assert.ErrorIs(t, c.Err(), context.Canceled)
			assert.True(t, chanClosed(c.Done()))
		})
	}
}

// TestHandlerContextCancel: cancel ends the context at once, before or
// after anything watches it, and the contexts derived from it before its
// cancel returns, as context.WithDeadline's cancel does — through a value
// wrapped around it too (a handler's span puts one there when tracing is
// on), where the context package finds no context of its own to
// register with unless Value hands it the inner one.
func TestHandlerContextCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, cancel := newHandlerContext(context.Background(), time.Now().Add(time.Hour), time.Now())
		cancel()
		assert.ErrorIs(t, c.Err(), context.Canceled)
		assert.True(t, chanClosed(c.Done()))
		assert.ErrorIs(t, context.Cause(c), context.Canceled)

		c, cancel = newHandlerContext(context.Background(), time.Now().Add(time.Hour), time.Now())
		done := c.Done()
		cancel()
		assert.True(t, chanClosed(done))
		assert.ErrorIs(t, c.Err(), context.Canceled)
	})
	for i := range 100 {
		c, cancel := newHandlerContext(context.Background(), time.Now().Add(time.Hour), time.Now())
		child, cancelChild := context.WithCancel(c)
		wrapped, cancelWrapped := context.WithTimeout(context.WithValue(c, spanKey{}, "span"), time.Hour)
		cancel()
		require.ErrorIs(t, child.Err(), context.Canceled, "try %d: a derived context ends before the cancel returns", i)
		require.ErrorIs(t, wrapped.Err(), context.Canceled, "try %d: through a value, too", i)
		cancelChild()
		cancelWrapped()
	}
}

type spanKey struct{}

// TestHandlerContextAfterFunc: a function given to context.AfterFunc runs
// once when the context ends, unless stopped before.
func TestHandlerContextAfterFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, cancel := newHandlerContext(context.Background(), time.Time{}, time.Now())
		var ran, stopped int
		var mu sync.Mutex
		context.AfterFunc(c, func() { mu.Lock(); ran++; mu.Unlock() })
		stop := context.AfterFunc(c, func() { mu.Lock(); stopped++; mu.Unlock() })
		assert.True(t, stop())
		assert.False(t, stop(), "stopped once")
		cancel()
		cancel()
		synctest.Wait()
		assert.Equal(t, 1, ran)
		assert.Equal(t, 0, stopped)
	})
}

// TestHandlerContextConcurrentUse: Done, Err, AfterFunc and the ends
// racing one another leave one error, a closed Done, and every function
// run once (go test -race checks the rest).
func TestHandlerContextConcurrentUse(t *testing.T) {
	for range 200 {
		parent, closeParent := context.WithCancel(context.Background())
		c, cancel := newHandlerContext(parent, time.Now().Add(time.Millisecond), time.Now())
		var ran sync.WaitGroup
		var wg sync.WaitGroup
		for i := range 8 {
			ran.Add(1)
			wg.Go(func() {
				context.AfterFunc(c, ran.Done)
				switch i % 4 {
				case 0:
					<-c.Done()
				case 1:
					_ = c.Err()
				case 2:
					cancel()
				case 3:
					closeParent()
				}
			})
		}
		wg.Wait()
		ran.Wait()
		require.True(t, chanClosed(c.Done()))
		err := c.Err()
		require.Error(t, err)
		require.Contains(t, []error{context.Canceled, context.DeadlineExceeded}, err)
		require.Equal(t, err, c.Err(), "the error never changes")
		closeParent()
	}
}
