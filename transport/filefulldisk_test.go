package transport_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
)

// TestAReceiverWithAFullDiskFailsTheTransferAsItsOwn: a receiver's
// ReceiveTo into a file on a full disk (a 256 KiB tmpfs, for a 1 MiB
// transfer: writes fail with ENOSPC) failed with ErrIncomplete, so its sender read the failure as
// bytes cut off in transit (ErrIncomplete), as after a reset, and a retry
// loop sent the whole file again to the full disk. A failure to store the
// bytes is the receiver's own: ReceiveTo's error says so and wraps the
// write's (errors.Is ENOSPC), and the sender gets ErrHandler with its
// text. Over TCP the bytes are spliced into the file; over TLS copied.
func TestAReceiverWithAFullDiskFailsTheTransferAsItsOwn(t *testing.T) {
	disk := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", disk).Run() })
	for _, overTLS := range []bool{false, true} {
		name := "tcp"
		if overTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			ca := newCA(t, "test")
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				if overTLS {
					cfg.Security.TLS = tlsFor(t, ca, cfg.NodeID)
				}
			})
			received := make(chan error, 1)
			c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
				full, err := os.CreateTemp(disk, "dst")
				if err != nil {
					received <- err
					return err
				}
				defer os.Remove(full.Name())
				defer full.Close()
				_, err = ft.ReceiveTo(full)
				received <- err
				return err
			}))
			src, data := tempFile(t, 1<<20)
			_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))

			require.Error(t, err)
			got := within(t, received, 10*time.Second, "the handler's ReceiveTo")
			require.Error(t, got)
			assert.ErrorIs(t, got, syscall.ENOSPC, "ReceiveTo's error wraps the write's")
			assert.NotErrorIs(t, got, transport.ErrIncomplete, "the bytes came; storing them failed")

			assert.ErrorIs(t, err, transport.ErrHandler, "the receiver failed the transfer")
			assert.NotErrorIs(t, err, transport.ErrIncomplete, "not bytes cut off in transit")
			assert.Contains(t, err.Error(), "no space left on device")
			var remote *transport.RemoteError
			assert.True(t, errors.As(err, &remote), "the receiver's failure: %v", err)
		})
	}
}
