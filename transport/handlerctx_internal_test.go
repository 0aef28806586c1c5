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
			c, cancel := newHandlerContext(context.Background(), deadline)
			defer cancel()
			d, ok := c.Deadline()
			assert.True(t, ok)
			assert.Equal(t, deadline, d)
			var done <-chan struct{}
			if watched {
				done = c.Done()
				assert.False(t, isClosed(done))
			}
			assert.NoError(t, c.Err())
			time.Sleep(999 * time.Millisecond)
			synctest.Wait()
			if watched {
				assert.False(t, isClosed(done), "a millisecond early")
			}
			assert.NoError(t, c.Err(), "a millisecond early")
			time.Sleep(time.Millisecond)
			synctest.Wait()
			if watched {
				assert.True(t, isClosed(done), "its timer closed Done")
			}
			assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
			assert.True(t, isClosed(c.Done()), "Done is closed once Err is set, even when first asked after")
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
			c, cancel := newHandlerContext(parent, time.Time{})
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
				assert.True(t, isClosed(done))
			}
			assert.ErrorIs(t, c.Err(), context.Canceled)
			assert.True(t, isClosed(c.Done()))
		})
	}
}

// TestHandlerContextCancel: cancel ends the context at once, before or
// after anything watches it, and lets go of its timer and of its hook on
// the parent.
func TestHandlerContextCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, cancel := newHandlerContext(context.Background(), time.Now().Add(time.Hour))
		cancel()
		assert.ErrorIs(t, c.Err(), context.Canceled)
		assert.True(t, isClosed(c.Done()))

		c, cancel = newHandlerContext(context.Background(), time.Now().Add(time.Hour))
		done := c.Done()
		require.NotNil(t, c.timer)
		require.NotNil(t, c.stop)
		cancel()
		assert.True(t, isClosed(done))
		assert.ErrorIs(t, c.Err(), context.Canceled)
		assert.Nil(t, c.timer, "its timer is stopped and dropped")
		assert.Nil(t, c.stop, "its hook on the parent is removed")
	})
}

// TestHandlerContextDerivedContexts: contexts a handler derives from its
// context (a nested request's deadline, say) end with it and report why,
// and are hooked to it without a goroutine each: context.WithCancel
// finds AfterFunc.
func TestHandlerContextDerivedContexts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, cancel := newHandlerContext(context.Background(), time.Now().Add(time.Second))
		defer cancel()
		child, cancelChild := context.WithTimeout(c, time.Hour)
		defer cancelChild()
		withValue := context.WithValue(child, "key", "value")
		assert.Len(t, c.after, 1, "hooked by AfterFunc")
		other, cancelOther := context.WithCancel(c)
		assert.Len(t, c.after, 2)
		cancelOther()
		assert.ErrorIs(t, other.Err(), context.Canceled)
		assert.Len(t, c.after, 1, "a child cancelled first removes its hook")
		assert.NoError(t, c.Err(), "a child's cancel does not reach its parent")

		time.Sleep(time.Second)
		synctest.Wait()
		assert.ErrorIs(t, child.Err(), context.DeadlineExceeded)
		assert.ErrorIs(t, context.Cause(child), context.DeadlineExceeded)
		assert.Equal(t, "value", withValue.Value("key"))
		assert.Nil(t, c.Value("key"), "the transport's context carries no values")
		assert.Empty(t, c.after)

		ran := make(chan struct{})
		stop := context.AfterFunc(c, func() { close(ran) })
		synctest.Wait()
		assert.True(t, isClosed(ran), "AfterFunc on an ended context runs at once")
		assert.False(t, stop())
	})
}

// TestHandlerContextAfterFunc: a function given to context.AfterFunc runs
// once when the context ends, unless stopped before.
func TestHandlerContextAfterFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, cancel := newHandlerContext(context.Background(), time.Time{})
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
		c, cancel := newHandlerContext(parent, time.Now().Add(time.Millisecond))
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
		require.True(t, isClosed(c.Done()))
		err := c.Err()
		require.Error(t, err)
		require.Contains(t, []error{context.Canceled, context.DeadlineExceeded}, err)
		require.Equal(t, err, c.Err(), "the error never changes")
		closeParent()
	}
}
