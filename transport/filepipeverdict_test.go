package transport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
)

// TestFileHandlersEarlyFailureReachesTheSenderOverAnUnbufferedConn: over
// net.Pipe's unbuffered connections, which the transport must not need a
// socket buffer to make progress on, a file handler fails a transfer
// before its bytes end. Its verdict waited for the sender to read it, and
// the sender read only once its last byte was sent or its send failed:
// the receiver's write of the verdict met Timeouts.Handshake, and the
// sender, cut off a second later, failed 6 s in with ErrIncomplete ("no
// result from the receiver: EOF"), as if the bytes were cut in transit,
// for a retry loop to send them again. The sender reads the verdict while it sends, and
// stops sending once it has it.
func TestFileHandlersEarlyFailureReachesTheSenderOverAnUnbufferedConn(t *testing.T) {
	for _, mode := range fileModes {
		t.Run(mode.name, func(t *testing.T) {
			inBubble(t, 60*time.Second, func(t *testing.T) {
				pipes := &pipeNetwork{listeners: make(map[string]*pipeListener)}
				c, err := transporttest.Start(2, transporttest.Options{Tweak: func(i int, cfg *transport.Config) {
					cfg.ListenAddr = []string{"a", "b"}[i]
					cfg.Dialer = pipes
					cfg.Listen = pipes.listen
					cfg.Telemetry.DisableSocketMeasurement = true
				}})
				require.NoError(t, err)
				defer c.Close()
				c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
					return errors.New("not wanted")
				}))
				src, data := tempFile(t, 8<<20)
				began := time.Now()
				_, err = c.Nodes[0].SendFile(context.Background(), c.ID(1), verbBootstrap, src, 0, int64(len(data)), mode.opts...)
				took := time.Since(began)

				require.Error(t, err)
				assert.ErrorIs(t, err, transport.ErrHandler, "the handler's failure reaches the sender")
				assert.NotErrorIs(t, err, transport.ErrIncomplete, "not bytes cut off in transit")
				assert.Contains(t, err.Error(), "not wanted")
				assert.Less(t, took, c.Configs[1].Timeouts.Handshake, "the verdict waits out no timeout")
			})
		})
	}
}
