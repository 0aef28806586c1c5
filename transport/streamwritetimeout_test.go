package transport_test

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// Verbs of the stream write timeout tests.
const (
	verbStreamDeaf transport.Verb = 160 // the handler never reads
	verbStreamSlow transport.Verb = 161 // the handler reads slowly, all along
)

// streamModes are the two kinds of stream: in the peer's session, and on
// a connection of its own.
var streamModes = []struct {
	name string
	opts []transport.StreamOption
	// slowTotal is what TestStreamWriteToAPeerThatReadsSlowly writes:
	// seconds' worth beyond what the windows, or the sockets' buffers on
	// loopback (megabytes), hold.
	slowTotal int
}{
	{"session", nil, 4 << 20},
	{"own connection", []transport.StreamOption{transport.OwnConnection()}, 16 << 20},
}

// TestStreamWriteToAPeerThatStopsReading: Timeouts.Write bounds a write
// to a peer that stops reading, as it does on every lane and for
// SendFile; a stream's Write had no such bound, and one whose peer's
// handler stopped reading (stuck on a lock, say) waited for ever, with
// the caller's goroutine, unless the caller set a deadline of its own.
// It now fails with os.ErrDeadlineExceeded once a chunk has waited
// Timeouts.Write for the peer to take it.
func TestStreamWriteToAPeerThatStopsReading(t *testing.T) {
	const write = time.Second
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) { cfg.Timeouts.Write = write })
	release := make(chan struct{})
	defer close(release)
	c.Nodes[1].HandleStream(verbStreamDeaf, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}))
	for _, mode := range streamModes {
		t.Run(mode.name, func(t *testing.T) {
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStreamDeaf, mode.opts...)
			require.NoError(t, err)
			defer s.Close()
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := s.Write(buf); err != nil {
						done <- err
						return
					}
				}
			}()
			select {
			case err := <-done:
				assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			case <-time.After(10 * write): // the sockets' buffers fill in well under a second
				s.Close() // ends the Write
				<-done
				t.Fatalf("a stream Write still blocked %v after its peer stopped reading, with Timeouts.Write %v", 10*write, write)
			}
		})
	}
}

// TestStreamWriteToAPeerThatReadsSlowly: the bound is on each chunk, not
// on the whole transfer: a peer that takes the bytes slowly but a chunk
// well within Timeouts.Write gets all of them, however long the writing
// takes in all.
func TestStreamWriteToAPeerThatReadsSlowly(t *testing.T) {
	const write = time.Second
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) { cfg.Timeouts.Write = write })
	got := make(chan int64, 2)
	c.Nodes[1].HandleStream(verbStreamSlow, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		// 64 KiB every 25 ms, about 2.5 MiB/s: a chunk of 64 KiB in
		// 25 ms, well within Timeouts.Write.
		var n int64
		buf := make([]byte, 64<<10)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			m, err := io.ReadFull(s, buf)
			n += int64(m)
			if err != nil {
				got <- n
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				got <- n
				return
			}
		}
	}))
	for _, mode := range streamModes {
		t.Run(mode.name, func(t *testing.T) {
			s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbStreamSlow, mode.opts...)
			require.NoError(t, err)
			defer s.Close()
			start := time.Now()
			buf := make([]byte, 64<<10)
			total := mode.slowTotal
			for sent := 0; sent < total; sent += len(buf) {
				_, err := s.Write(buf)
				require.NoError(t, err, "after %d bytes in %v", sent, time.Since(start))
			}
			require.NoError(t, s.CloseWrite())
			took := time.Since(start)
			assert.Equal(t, int64(total), <-got)
			t.Logf("%d bytes written in %v (Timeouts.Write %v)", total, took, write)
		})
	}
}
