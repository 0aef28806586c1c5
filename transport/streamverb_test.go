package transport_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/xtaci/smux"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestMalformedStreamVerbIsCountedAsBadInput: a stream whose opening is
// not the wire format — a verb that does not end within
// MaxStreamOpenSize bytes — is closed (wire/doc.go: "an acceptor that
// reads a malformed verb" closes the stream without a status byte), and,
// as every other decoder error must be (wire/doc.go, Hostile input:
// "with the error as the logged reason"), counted in BadInput and
// logged: on a connection of its own the whole connection is closed for
// it, as a file connection is for a malformed file header, which is
// counted and logged (TestBadFileHeadersAreCountedLikeOtherBadInput). It
// was closed silently, neither counted nor logged.
func TestMalformedStreamVerbIsCountedAsBadInput(t *testing.T) {
	badVerb := []byte{0xff, 0xff, 0xff, 0xff, 0xff} // no last byte within wire.MaxStreamOpenSize
	require.Len(t, badVerb, wire.MaxStreamOpenSize)
	for _, tc := range []struct {
		name string
		lane routing.Lane
	}{
		{"connection of its own", routing.Lane(5)},
		{"session stream", routing.Lane(3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warns atomic.Int64
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				if i == 1 {
					cfg.Telemetry.Logger = slog.New(transport.WarnCounter(&warns))
				}
			})
			c.Nodes[1].HandleStream(verbBootstrap, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {}))
			conn := dialAs(c.Nodes[1].Addr().String(), string(c.ID(0)), tc.lane)
			require.NotNil(t, conn)
			defer conn.Close()
			var st io.ReadWriteCloser = conn
			if tc.lane == routing.Lane(3) {
				sc := smux.DefaultConfig()
				sc.Version = 2
				session, err := smux.Client(conn, sc)
				require.NoError(t, err)
				defer session.Close()
				s, err := session.OpenStream()
				require.NoError(t, err)
				require.NoError(t, s.SetReadDeadline(time.Now().Add(5*time.Second)))
				st = s
			} else {
				require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
			}
			_, err := st.Write(badVerb)
			require.NoError(t, err)
			n, err := io.Copy(io.Discard, st)
			assert.Zero(t, n, "no status byte")
			if err != io.EOF { // smux's WriteTo ends with it
				require.NoError(t, err, "closed by the node, before the deadline")
			}

			waitFor(t, 5*time.Second, "the malformed verb counted", func() bool {
				return c.Nodes[1].Stats().BadInput[transport.BadInputMalformed] == 1
			})
			assert.Positive(t, warns.Load(), "and logged")
		})
	}
}

// TestMalformedStreamChunkIsCountedAsBadInput: a chunk header whose
// length is over wire.MaxStreamChunk fails the handler's Read with
// ErrMalformed and ends the stream; like every other decoder error it is
// counted in BadInput and logged. It reached the handler alone.
func TestMalformedStreamChunkIsCountedAsBadInput(t *testing.T) {
	var warns atomic.Int64
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 1 {
			cfg.Telemetry.Logger = slog.New(transport.WarnCounter(&warns))
		}
	})
	readErr := make(chan error, 1)
	c.Nodes[1].HandleStream(verbBootstrap, transport.StreamHandlerFunc(func(ctx context.Context, s *transport.Stream) {
		_, err := io.Copy(io.Discard, s)
		readErr <- err
	}))
	conn := dialAs(c.Nodes[1].Addr().String(), string(c.ID(0)), routing.Lane(5))
	require.NotNil(t, conn)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := conn.Write(wire.AppendStreamOpen(nil, uint32(verbBootstrap)))
	require.NoError(t, err)
	var status [1]byte
	_, err = io.ReadFull(conn, status[:])
	require.NoError(t, err)
	_, refused := wire.ParseStreamStatus(status[0])
	require.False(t, refused)
	_, err = conn.Write([]byte{0, 1, 0, 1}) // 64 KiB + 1
	require.NoError(t, err)
	select {
	case err := <-readErr:
		require.ErrorIs(t, err, wire.ErrMalformed)
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's Read did not fail")
	}
	waitFor(t, 5*time.Second, "the malformed chunk counted", func() bool {
		return c.Nodes[1].Stats().BadInput[transport.BadInputMalformed] == 1
	})
	assert.Positive(t, warns.Load(), "and logged")
}
