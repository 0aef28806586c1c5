package transport_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestStreamStalledStreamsDoNotStallSession (found in review): streams
// whose handlers stop reading while their openers keep writing each hold
// their window (StreamConfig.StreamBuffer, smux v2's per-stream window) of
// the session's shared receive buffer (SessionBuffer, smux
// MaxReceiveBuffer), whatever the read-ahead takes: what it reads is
// acknowledged and the window refilled. With the defaults, 4 MiB / 256 KiB
// = 16 such streams filled the buffer (19 with the read-ahead's timing),
// and smux's receive loop stopped reading the session's socket: every
// stream on it stalled, a healthy one
// included, and no open got through either. The streams a session admits
// are now bounded so that their windows together fit in its buffer (the
// opener's beyond it fail with ErrOverloaded), and a healthy stream keeps
// moving however many of the others stall.
func TestStreamStalledStreamsDoNotStallSession(t *testing.T) {
	c := newCluster(t, 2, nil) // the default stream config
	echoStreams(c)
	const verbStall transport.Verb = 22
	stalled := make(chan struct{})
	var stallOnce sync.Once
	unstall := func() { stallOnce.Do(func() { close(stalled) }) }
	defer unstall()
	c.Nodes[1].HandleStream(verbStall, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		select { // reads nothing
		case <-stalled:
		case <-ctx.Done():
		}
	}))

	// The healthy stream, opened first: the greeting of a stream opened
	// on a stalled session could not get through.
	healthy, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer healthy.Close()
	echo := func() error {
		_ = healthy.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := healthy.Write([]byte("ping")); err != nil {
			return err
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(healthy, got); err != nil {
			return err
		}
		if string(got) != "ping" {
			return errors.New("echoed " + string(got))
		}
		return nil
	}
	require.NoError(t, echo(), "the healthy stream echoes before any stall")

	const n = 40 // more than the session's buffer holds windows of
	var written atomic.Int64
	opened, refused := 0, 0
	var openErr error // an open that failed otherwise: the session stalled
	var writers sync.WaitGroup
	defer writers.Wait() // after the streams' Close, which ends their Writes
	for range n {
		s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStall)
		if errors.Is(err, transport.ErrOverloaded) {
			refused++
			continue
		}
		if err != nil {
			openErr = err
			t.Logf("opening stalled stream %d (%d refused): %v", opened, refused, err)
			break
		}
		opened++
		writers.Add(1)
		go func() {
			defer writers.Done()
			chunk := make([]byte, 32<<10)
			for {
				m, err := s.Write(chunk)
				written.Add(int64(m))
				if err != nil {
					return
				}
			}
		}()
		defer s.Close()
	}
	t.Logf("opened %d stalled streams, %d refused", opened, refused)
	require.Positive(t, opened)

	// The writers block once their windows are full: wait until no byte
	// has gone out for a while.
	last, quiet := int64(-1), 0
	waitFor(t, 30*time.Second, "the stalled streams' writers block", func() bool {
		time.Sleep(50 * time.Millisecond)
		if w := written.Load(); w != last {
			last, quiet = w, 0
			return false
		}
		quiet++
		return quiet >= 6 // 300 ms without a byte
	})
	t.Logf("the stalled streams' writers took %d KiB and block", last>>10)

	start := time.Now()
	err = echo()
	t.Logf("the healthy stream's echo took %v: %v", time.Since(start), err)
	assert.NoError(t, err, "a healthy stream stalls behind %d stalled streams on its session", opened)
	assert.NoError(t, openErr, "opening a stream on a session with stalled streams")

}
