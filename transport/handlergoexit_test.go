package transport_test

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

const verbGoexit transport.Verb = 254

// TestHandlerThatEndsItsGoroutineIsAnError: a handler that ends its
// goroutine with runtime.Goexit (a test's require failing in it, or
// t.FailNow) fails its request as a panicking one does, with ErrHandler,
// and gives back its stage's slot and its bytes: the verb and the
// connection go on serving, and Shutdown is not kept waiting. The request
// went unanswered until its deadline, the slot and the bytes stayed
// taken for good (a verb of Concurrent(1) served nothing more), an
// ordered queue never ran again, and Shutdown waited for an answer that
// never came.
func TestHandlerThatEndsItsGoroutineIsAnError(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []transport.HandleOption
	}{
		{"concurrent", []transport.HandleOption{transport.Concurrent(1)}},
		{"ordered", []transport.HandleOption{transport.Ordered()}},
		{"inline", []transport.HandleOption{transport.Inline()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			defer c.Close()
			var oneWay atomic.Int32
			c.Nodes[1].Handle(verbGoexit, transport.HandlerFunc(func(_ context.Context, m *transport.Message) ([]byte, error) {
				if bytes.HasPrefix(m.Payload, []byte("exit")) {
					runtime.Goexit()
				}
				if !m.IsRequest {
					oneWay.Add(1)
				}
				return m.Payload, nil
			}), tc.opts...)
			for range 3 {
				_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, []byte("exit"))
				require.ErrorIs(t, err, transport.ErrHandler, "the request of a handler that ended its goroutine")
				resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, []byte("ok"))
				require.NoError(t, err, "the verb serves on")
				assert.Equal(t, "ok", string(resp))
			}
			// A large request, handed over whole on the large lane.
			large := bytes.Repeat([]byte{'x'}, 1<<20)
			_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, append([]byte("exit"), large...))
			require.ErrorIs(t, err, transport.ErrHandler, "the large request of a handler that ended its goroutine")
			resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, large)
			require.NoError(t, err, "the verb serves on")
			assert.Equal(t, large, resp)
			// One-way messages, in a frame of their own or not: the ones
			// behind one whose handler ended its goroutine still run.
			for _, p := range []string{"exit", "a", "exit", "b", "c"} {
				require.NoError(t, c.Nodes[0].Send(context.Background(), c.ID(1), verbGoexit, []byte(p)))
			}
			waitFor(t, 5*time.Second, "the one-way messages behind the handler that ended its goroutine ran", func() bool { return oneWay.Load() == 3 })
			waitFor(t, 5*time.Second, "every byte given back", func() bool { return c.Nodes[1].Stats().InboundHeld == 0 })
			for _, st := range c.Nodes[1].Stats().Stages {
				assert.Zero(t, st.Active, "stage %s: handlers running", st.Name)
			}
			require.NoError(t, c.Nodes[1].Shutdown(ctxTimeout(t, 5*time.Second)), "Shutdown waits for no answer")
		})
	}
}

// TestReaderHandlerThatEndsItsGoroutineIsAnError: a ReaderHandler that
// ends its goroutine with runtime.Goexit while a large request streams to
// it fails the request with ErrHandler, and the rest of the message is
// discarded, as when it returns early: the connection's reader went on
// waiting to hand it the next part, for good.
func TestReaderHandlerThatEndsItsGoroutineIsAnError(t *testing.T) {
	c := newCluster(t, 2, nil)
	defer c.Close()
	c.Nodes[1].HandleReader(verbGoexit, transport.ReaderHandlerFunc(func(_ context.Context, _ *transport.Message, body io.Reader) ([]byte, error) {
		var first [4]byte
		if _, err := io.ReadFull(body, first[:]); err != nil {
			return nil, err
		}
		if string(first[:]) == "exit" {
			runtime.Goexit()
		}
		n, err := io.Copy(io.Discard, body)
		return []byte{byte(n >> 20)}, err
	}))
	large := func(head string) []byte { return append([]byte(head), bytes.Repeat([]byte{'x'}, 4<<20)...) }
	for range 2 {
		_, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, large("exit"))
		require.ErrorIs(t, err, transport.ErrHandler, "the request of a handler that ended its goroutine")
		resp, err := c.Nodes[0].Request(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, large("okay"))
		require.NoError(t, err, "the verb serves on")
		assert.Equal(t, []byte{4}, resp)
	}
	waitFor(t, 5*time.Second, "every byte given back", func() bool { return c.Nodes[1].Stats().InboundHeld == 0 })
	require.NoError(t, c.Nodes[1].Shutdown(ctxTimeout(t, 5*time.Second)), "Shutdown waits for no answer")
}

// TestStreamHandlerThatEndsItsGoroutineIsCut: a stream handler that ends
// its goroutine with runtime.Goexit has its stream cut short, as a
// panicking one does (the opener reads io.ErrUnexpectedEOF, not a clean
// end): it was ended as if the handler had returned.
func TestStreamHandlerThatEndsItsGoroutineIsCut(t *testing.T) {
	c := newCluster(t, 2, nil)
	defer c.Close()
	c.Nodes[1].HandleStream(verbGoexit, transport.StreamHandlerFunc(func(_ context.Context, s *transport.Stream) {
		var b [1]byte
		if _, err := io.ReadFull(s, b[:]); err == nil && b[0] == 'e' {
			runtime.Goexit()
		}
		_, _ = s.Write(b[:])
		_ = s.CloseWrite()
	}))
	for _, first := range []byte{'e', 'x'} {
		s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit)
		require.NoError(t, err)
		_, err = s.Write([]byte{first})
		require.NoError(t, err)
		got, err := io.ReadAll(s)
		if first == 'e' {
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the stream of a handler that ended its goroutine is cut short")
		} else {
			assert.NoError(t, err)
			assert.Equal(t, []byte{'x'}, got)
		}
		s.Close()
	}
}

// TestFileHandlerThatEndsItsGoroutineIsAnError: a file handler that ends
// its goroutine with runtime.Goexit fails its transfer with ErrHandler,
// as a panicking one does, and gives back its place among
// Files.MaxConcurrent: the sender waited for a verdict that never came.
func TestFileHandlerThatEndsItsGoroutineIsAnError(t *testing.T) {
	c := newCluster(t, 2, func(_ int, cfg *transport.Config) { cfg.Files.MaxConcurrent = 1 })
	defer c.Close()
	var calls atomic.Int32
	c.Nodes[1].HandleFile(verbGoexit, transport.FileHandlerFunc(func(_ context.Context, ft *transport.FileTransfer) error {
		if calls.Add(1)%2 == 1 {
			runtime.Goexit()
		}
		_, err := io.Copy(io.Discard, ft.Reader())
		return err
	}))
	src, data := tempFile(t, 1<<20)
	for range 2 {
		_, err := c.Nodes[0].SendFile(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, src, 0, int64(len(data)))
		require.ErrorIs(t, err, transport.ErrHandler, "the transfer of a handler that ended its goroutine")
		n, err := c.Nodes[0].SendFile(ctxTimeout(t, 5*time.Second), c.ID(1), verbGoexit, src, 0, int64(len(data)))
		require.NoError(t, err, "the verb serves on")
		assert.EqualValues(t, len(data), n)
	}
}
