package transport_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestAHandlersNestedCancelOrUnknownVerbIsAHandlerError: a handler that
// returned an error wrapping context.Canceled (its own call to a replica,
// cancelled) or ErrUnknownVerb (a replica lacking a verb it forwarded to)
// had its requester's Request fail with that error: as if the requester's
// own context had been cancelled, or as if the node it asked lacked the
// verb, so a caller that ignores its own cancellations dropped the
// failure, and one that falls back for an old peer did so needlessly.
// The requester now sees ErrHandler, with the handler's message; errors
// a handler may pass on as the transport's (ErrOverloaded, an expiry)
// still arrive as such.
func TestAHandlersNestedCancelOrUnknownVerbIsAHandlerError(t *testing.T) {
	c := newCluster(t, 2, nil)
	const verbStaged, verbReader, verbFile transport.Verb = 40, 41, 42
	tests := []struct {
		name  string
		err   error
		want  error
		isnt  error
		wantM string
	}{
		{"canceled", fmt.Errorf("read from replica: %w", context.Canceled), transport.ErrHandler, context.Canceled, "read from replica: context canceled"},
		{"unknown verb", fmt.Errorf("forward: %w", transport.ErrUnknownVerb), transport.ErrHandler, transport.ErrUnknownVerb, "forward: transport: unknown verb"},
		{"overloaded", fmt.Errorf("replica busy: %w", transport.ErrOverloaded), transport.ErrOverloaded, transport.ErrHandler, ""},
		{"deadline", fmt.Errorf("replica: %w", context.DeadlineExceeded), transport.ErrExpired, transport.ErrHandler, ""},
	}
	// The payload's one byte says which of tests the handler fails with.
	handleAll(c, verbStaged, func(_ context.Context, m *transport.Message) ([]byte, error) {
		return nil, tests[m.Payload[0]].err
	})
	for _, n := range c.Nodes {
		n.HandleReader(verbReader, transport.ReaderHandlerFunc(func(_ context.Context, _ *transport.Message, body io.Reader) ([]byte, error) {
			b, _ := io.ReadAll(body)
			return nil, tests[b[0]].err
		}))
		// A file transfer's first byte says the same.
		n.HandleFile(verbFile, transport.FileHandlerFunc(func(_ context.Context, ft *transport.FileTransfer) error {
			b, _ := io.ReadAll(ft.Reader())
			return tests[b[0]].err
		}))
	}
	for i, tt := range tests {
		for _, send := range []struct {
			how string
			do  func(ctx context.Context) error
		}{
			{"staged", func(ctx context.Context) error {
				_, err := c.Nodes[0].Request(ctx, c.ID(1), verbStaged, []byte{byte(i)})
				return err
			}},
			{"reader", func(ctx context.Context) error {
				_, err := c.Nodes[0].Request(ctx, c.ID(1), verbReader, []byte{byte(i)})
				return err
			}},
			{"reader, large", func(ctx context.Context) error {
				// Over the large threshold: streamed in parts to the handler.
				_, err := c.Nodes[0].Request(ctx, c.ID(1), verbReader, append([]byte{byte(i)}, make([]byte, 1<<20)...))
				return err
			}},
			{"file", func(ctx context.Context) error {
				path := filepath.Join(t.TempDir(), "src")
				require.NoError(t, os.WriteFile(path, append([]byte{byte(i)}, make([]byte, 64<<10)...), 0o600))
				src, err := os.Open(path)
				require.NoError(t, err)
				defer src.Close()
				_, err = c.Nodes[0].SendFile(ctx, c.ID(1), verbFile, src, 0, 1+64<<10)
				return err
			}},
		} {
			t.Run(tt.name+"/"+send.how, func(t *testing.T) {
				err := send.do(ctxTimeout(t, 5*time.Second))
				require.Error(t, err)
				assert.ErrorIs(t, err, tt.want)
				assert.NotErrorIs(t, err, tt.isnt)
				if tt.wantM != "" {
					var remote *transport.RemoteError
					require.ErrorAs(t, err, &remote)
					assert.Contains(t, remote.Message, tt.wantM)
				}
			})
		}
	}
}
