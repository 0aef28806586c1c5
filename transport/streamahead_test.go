package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// writeAndClose writes data to s and half-closes it in a goroutine, and
// sends the first error.
func writeAndClose(s *transport.Stream, data []byte) <-chan error {
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		if err == nil {
			err = s.CloseWrite()
		}
		wrote <- err
	}()
	return wrote
}

// readsAhead waits until s reads ahead, for at most d.
func readsAhead(s *transport.Stream, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if transport.StreamReadAhead(s) >= 0 {
			return true
		}
	}
	return false
}

// TestStreamReadAheadInOrderBothWays (from review): both sides write more
// than the window before either reads, so both read ahead; then both read
// with random sizes, and every byte arrives once, in order.
func TestStreamReadAheadInOrderBothWays(t *testing.T) {
	c := newCluster(t, 2, nil)
	data := makePayload(5, 5, 3<<20)
	handled := make(chan error, 1)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		wrote := writeAndClose(s, data)
		if !readsAhead(s, 10*time.Second) {
			handled <- errors.New("the handler's stream never read ahead")
			return
		}
		got, err := io.ReadAll(s)
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("the handler read other bytes than were written")
		}
		if werr := <-wrote; err == nil {
			err = werr
		}
		handled <- err
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	wrote := writeAndClose(s, data)
	require.True(t, readsAhead(s, 10*time.Second), "the opener's stream reads ahead")
	rng := rand.New(rand.NewSource(1))
	var got []byte
	for {
		b := make([]byte, 1+rng.Intn(70000))
		n, err := s.Read(b)
		got = append(got, b[:n]...)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.True(t, bytes.Equal(got, data), "in order, once: %d of %d", len(got), len(data))
	require.NoError(t, <-wrote)
	require.NoError(t, <-handled)
}
