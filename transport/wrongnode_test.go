package transport

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestAStaleAddressDoesNotDeliverToAnotherNode: n1's membership still
// gives nx's old address, where another member, ny, now listens (a pod
// that got nx's IP address when nx went away, before the membership
// noticed). Without TLS, nothing checked whom a dial reached: ny's
// handlers ran the messages, requests, streams and files meant for nx,
// and nx's caller got ny's answers. Now the acceptor names itself in its
// reply, and the dial refuses another node: a request to nx fails with
// ErrConnectionReset saying whom it found, the one-way message waits for
// nx, and once the membership gives nx's own address, nx gets it.
func TestAStaleAddressDoesNotDeliverToAnotherNode(t *testing.T) {
	var nyGot atomic.Int64
	serve := func(tr *Transport, got *atomic.Int64) {
		tr.Handle(1, HandlerFunc(func(_ context.Context, m *Message) ([]byte, error) {
			got.Add(1)
			return append([]byte("answered by "), tr.cfg.NodeID...), nil
		}))
		tr.HandleStream(2, StreamHandlerFunc(func(_ context.Context, s *Stream) {
			got.Add(1)
			_, _ = io.Copy(io.Discard, s)
		}))
		tr.HandleFile(3, FileHandlerFunc(func(_ context.Context, ft *FileTransfer) error {
			got.Add(1)
			_, err := io.Copy(io.Discard, ft.Reader())
			return err
		}))
	}
	ny := startNode(t, "ny", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), nil)
	serve(ny, &nyGot)
	static := cluster.NewStatic(
		cluster.Member{ID: "ny", Addr: ny.Addr().String()},
		cluster.Member{ID: "nx", Addr: ny.Addr().String()}, // stale: ny lives there now
	)
	n1 := startNode(t, "n1", static, func(c *Config) {
		c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = time.Millisecond, 20*time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := n1.Request(ctx, "nx", 1, []byte("q"))
	require.Error(t, err, "nx's request answered by %q", resp)
	assert.ErrorIs(t, err, ErrConnectionReset)
	assert.Contains(t, err.Error(), `"ny"`, "the error names the node the dial reached")

	_, err = n1.OpenStream(ctx, "nx", 2)
	assert.Error(t, err, "a stream to nx opened on ny")
	_, err = n1.OpenStream(ctx, "nx", 2, OwnConnection())
	assert.Error(t, err, "a stream of its own connection to nx opened on ny")
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, []byte("some bytes"), 0o600))
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	_, err = n1.SendFile(ctx, "nx", 3, f, 0, 10)
	assert.Error(t, err, "a file for nx received by ny")

	require.NoError(t, n1.Send(ctx, "nx", 1, []byte("m")))
	// ny is reached and refused: the lane dials it again and again.
	eventually(t, func() bool { return n1.Stats().Total().ConnectFailures >= 3 }, "dials to the stale address fail")
	var nxGot atomic.Int64
	nx := startNode(t, "nx", cluster.NewStatic(cluster.Member{ID: "n1", Addr: "127.0.0.1:1"}), nil)
	serve(nx, &nxGot)
	static.Add(cluster.Member{ID: "nx", Addr: nx.Addr().String()})
	eventually(t, func() bool { return nxGot.Load() == 1 }, "the one-way message reaches nx once it is at its own address")
	resp, err = n1.Request(ctx, "nx", 1, []byte("q"))
	require.NoError(t, err)
	assert.Equal(t, "answered by nx", string(resp))
	assert.Zero(t, nyGot.Load(), "ny ran nx's messages")
	assert.Equal(t, int64(2), nxGot.Load())
}
