package transport_test

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestStreamReadAheadInOrderBothWays: both sides' Writes wait, both read ahead;
// then both read with random sizes; every byte arrives once, in order.
func TestStreamReadAheadInOrderBothWays(t *testing.T) {
	c := newCluster(t, 2, nil)
	const size = 3 << 20
	data := makePayload(5, 5, size)
	hdone := make(chan error, 1)
	c.Nodes[1].HandleStream(verbRepair, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		wrote := make(chan error, 1)
		go func() {
			_, err := s.Write(data)
			if err == nil {
				err = s.CloseWrite()
			}
			wrote <- err
		}()
		time.Sleep(500 * time.Millisecond)
		got, err := io.ReadAll(s)
		if err == nil && !bytes.Equal(got, data) {
			err = io.ErrShortBuffer
		}
		if werr := <-wrote; err == nil {
			err = werr
		}
		hdone <- err
	}))
	s, err := c.Nodes[0].OpenStream(ctxTimeout(t, 5*time.Second), c.ID(1), verbRepair)
	require.NoError(t, err)
	defer s.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		if err == nil {
			err = s.CloseWrite()
		}
		wrote <- err
	}()
	time.Sleep(700 * time.Millisecond)
	require.GreaterOrEqual(t, transport.StreamReadAhead(s), 0, "reads ahead")
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
	require.NoError(t, <-hdone)
}
