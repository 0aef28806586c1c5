package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

const verbBootstrap transport.Verb = 30

// tempFile writes size bytes of test material to a new file.
func tempFile(t testing.TB, size int) (*os.File, []byte) {
	t.Helper()
	data := make([]byte, size)
	for off := 0; off < size; off += len(fill) {
		copy(data[off:], fill)
	}
	if size > 8 {
		copy(data, []byte("internode")) // not a multiple of fill at offset 0
	}
	path := filepath.Join(t.TempDir(), "src")
	require.NoError(t, os.WriteFile(path, data, 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f, data
}

// receiveToFiles registers a handler on n that stores each transfer in a
// new file and reports the file's path, or the handler's error.
func receiveToFiles(t testing.TB, n *transport.Transport) chan string {
	dir := t.TempDir()
	got := make(chan string, 10)
	n.HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		f, err := os.CreateTemp(dir, "dst")
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := ft.ReceiveTo(f); err != nil {
			got <- "error: " + err.Error()
			return err
		}
		got <- f.Name()
		return nil
	}))
	return got
}

func TestSendFileRoundTrip(t *testing.T) {
	readers := []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
	})
	got := receiveToFiles(t, c.Nodes[1])
	src, data := tempFile(t, 3<<20+123)
	for _, r := range []struct{ off, n int64 }{{0, int64(len(data))}, {4097, 1 << 20}, {0, 0}, {int64(len(data)) - 5, 5}} {
		n, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, r.off, r.n)
		require.NoError(t, err, "range %+v", r)
		assert.Equal(t, r.n, n)
		path := <-got
		written, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(data[r.off:r.off+r.n], written), "range %+v arrives byte for byte", r)
	}
	st := c.Nodes[1].Stats()
	assert.Equal(t, uint64(4), st.FilesReceived)
	assert.Equal(t, uint64(4), c.Nodes[0].Stats().FilesSent)
	streamAndFileMetricsAgree(t, c.Nodes[0], readers[0])
	streamAndFileMetricsAgree(t, c.Nodes[1], readers[1])
}

func TestSendFileToReader(t *testing.T) {
	c := newCluster(t, 2, nil)
	got := make(chan []byte, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		b, err := io.ReadAll(ft.Reader())
		got <- b
		return err
	}))
	src, data := tempFile(t, 1<<20)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, <-got))
}

func TestSendFileErrors(t *testing.T) {
	c := newCluster(t, 2, nil)
	src, data := tempFile(t, 1<<20)
	ctx := ctxTimeout(t, 10*time.Second)

	_, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	assert.ErrorIs(t, err, transport.ErrUnknownVerb)
	assert.Contains(t, err.Error(), "(file transfer)", "the error names the connection kind")

	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		return errors.New("disk full")
	}))
	_, err = c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	assert.ErrorIs(t, err, transport.ErrHandler, "a handler that does not consume the transfer fails it")

	_, err = c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(len(data))+1)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "a range past the end of the file")
	// A range whose end overflows an int64 passed the check, and failed
	// only once its bytes ran out, over the network.
	_, err = c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 1, math.MaxInt64)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "a range whose end overflows")
	// A pipe has no size: it failed as "a range past the end of |0 (0
	// bytes)" for any length.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); w.Close() })
	_, err = c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, r, 0, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a regular file")
}

func TestSendFileDetectsCorruptionAndTruncation(t *testing.T) {
	const size = 2 << 20
	tests := []struct {
		name string
		want error // at the sender too: the receiver's ErrCorrupt reached it as ErrHandler
		fn   func(total int64, b []byte) ([]byte, bool)
	}{
		{"one byte flipped", transport.ErrCorrupt, func(total int64, b []byte) ([]byte, bool) {
			if total <= 1<<20 && 1<<20 < total+int64(len(b)) {
				b[1<<20-total] ^= 0x40
			}
			return b, true
		}},
		{"cut short", transport.ErrIncomplete, func(total int64, b []byte) ([]byte, bool) {
			if total+int64(len(b)) > size/2 {
				return b[:size/2-total], false
			}
			return b, true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			got := receiveToFiles(t, c.Nodes[1])
			// n1 reaches n2 through the tampering proxy.
			c.Members.Add(cluster.Member{ID: c.ID(1), Addr: tamperProxy(t, c.Nodes[1].Addr().String(), tt.fn)})
			src, data := tempFile(t, size)
			_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
			require.ErrorIs(t, err, tt.want, "the sender learns the transfer failed, and why")
			assert.Contains(t, <-got, "error: ", "the receiver's handler saw the failure")
		})
	}
}

func TestSendFileCancelled(t *testing.T) {
	for _, side := range []string{"sender", "receiver"} {
		t.Run(side, func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Files.RateLimit = 4 << 20 // slow enough to cancel mid-way
				cfg.Files.Chunk = 256 << 10
			})
			started := make(chan struct{})
			receiverCtx, cancelReceiver := context.WithCancel(context.Background())
			defer cancelReceiver()
			result := make(chan error, 1)
			c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
				close(started)
				r := ft.Reader()
				buf := make([]byte, 64<<10)
				for {
					if receiverCtx.Err() != nil {
						result <- receiverCtx.Err()
						return receiverCtx.Err()
					}
					if _, err := r.Read(buf); err != nil {
						result <- err
						return err
					}
				}
			}))
			src, data := tempFile(t, 16<<20)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sent := sendFileAsync(ctx, c, src, len(data))
			<-started
			if side == "sender" {
				cancel()
			} else {
				cancelReceiver()
			}
			err := <-sent
			require.Error(t, err)
			if side == "sender" {
				assert.ErrorIs(t, err, context.Canceled)
			}
			assert.Error(t, <-result, "the receiver sees the transfer end early")
		})
	}
}

// TestSendFileOfAFileThatShrank: the file shrinks while it is sent, so the
// sender's bytes stop short of the length its header announced. SendFile
// went on to wait for the receiver's verdict without ending its side of
// the connection, while the receiver waited for the missing bytes: each
// waited for the other, for ever with a context without deadline. It now
// ends its side, and both ends fail.
func TestSendFileOfAFileThatShrank(t *testing.T) {
	c := newCluster(t, 2, nil)
	const size = 64 << 20
	src, _ := tempFile(t, size)
	received := make(chan error, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		// Sender and receiver share the process: the file shrinks before
		// the receiver reads a byte, after the sender checked its size.
		if err := os.Truncate(src.Name(), 1<<20); err != nil {
			return err
		}
		f, err := os.CreateTemp(t.TempDir(), "dst")
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = ft.ReceiveTo(f)
		received <- err
		return err
	}))
	sent := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].SendFile(context.Background(), c.ID(1), verbBootstrap, src, 0, size)
		sent <- err
	}()
	select {
	case err := <-sent:
		var remote *transport.RemoteError
		assert.ErrorAs(t, err, &remote, "the receiver's verdict: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("SendFile of a file that shrank has not returned: sender and receiver wait for each other")
	}
	assert.ErrorIs(t, <-received, transport.ErrIncomplete)
}

// TestSendFileToAReceiverThatNeverAnswers: a receiver that completes the
// handshake and then never answers the file header. SendFile waited for
// its answer for ever (with no deadline in its context); it now waits
// Timeouts.Handshake, as for the handshake just before.
func TestSendFileToAReceiverThatNeverAnswers(t *testing.T) {
	c := newCluster(t, 1, func(i int, cfg *transport.Config) { cfg.Timeouts.Handshake = 200 * time.Millisecond })
	addr := fakeAcceptor(t, wire.Reply{Version: wire.MaxVersion, Reason: wire.Accepted}) // and then no answer
	c.Members.Add(cluster.Member{ID: "mute", Addr: addr})
	src, data := tempFile(t, 4096)
	sent := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, err := c.Nodes[0].SendFile(ctx, "mute", verbBootstrap, src, 0, int64(len(data)))
		sent <- err
	}()
	select {
	case err := <-sent:
		assert.ErrorIs(t, err, transport.ErrIncomplete)
	case <-time.After(5 * time.Second):
		cancel()
		<-sent
		t.Fatal("SendFile still waits for an answer to its header")
	}
}

// TestRateLimitedSendFileIsNotCutOff: a transfer rate-limited to 256 KiB/s
// takes longer (3 s) than the receiver's Keepalive, which bounds how long
// a sender may send nothing; it goes through, sent a quarter of the
// Keepalive's worth at a time and received in reads sized to match.
func TestRateLimitedSendFileIsNotCutOff(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Files.RateLimit = 256 << 10
		cfg.Timeouts.Keepalive = 2 * time.Second
	})
	got := receiveToFiles(t, c.Nodes[1])
	src, data := tempFile(t, 1<<20)
	n, err := c.Nodes[0].SendFile(ctxTimeout(t, 20*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	path := <-got
	b, err := os.ReadFile(path)
	require.NoError(t, err, path)
	assert.True(t, bytes.Equal(data, b))
}

// TestSendFileEndsWithErrClosed: a transfer under way when its sender's
// transport closes fails with ErrClosed, as SendFile's doc says; it
// failed with the socket's error.
func TestSendFileEndsWithErrClosed(t *testing.T) {
	c := newCluster(t, 2, nil)
	started := make(chan struct{})
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		close(started)
		<-ctx.Done() // reads nothing
		return ctx.Err()
	}))
	src, data := tempFile(t, 64<<20)
	sent := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].SendFile(context.Background(), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
		sent <- err
	}()
	<-started
	require.NoError(t, c.Nodes[0].Close())
	assert.ErrorIs(t, <-sent, transport.ErrClosed)
}

// TestRateLimitedSendFilesAreNotCutOff: the rate limit is the node's,
// shared by its transfers, and each sent a second's worth at a time (at
// least 64 KiB): with 4 sending at once each waited behind the others'
// chunks and sent nothing for 3 s, longer than the receiver's 2 s
// Keepalive, and 3 of 4 were cut off; alone under 16 KiB/s one sent its
// last 48 KiB 3 s after the first 64 KiB, and was cut off too. Each
// transfer now sends its share of a quarter of the Keepalive's worth.
func TestRateLimitedSendFilesAreNotCutOff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rate      int64
		transfers int
		size      int
	}{
		{"four sharing 256 KiB/s", 256 << 10, 4, 256 << 10},
		{"one at 16 KiB/s", 16 << 10, 1, 112 << 10}, // 64 KiB at once (the limiter's burst), then 48 KiB
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Files.RateLimit = tc.rate
				cfg.Timeouts.Keepalive = 2 * time.Second
			})
			got := receiveToFiles(t, c.Nodes[1])
			src, data := tempFile(t, tc.size)
			var sent []<-chan error
			for range tc.transfers {
				f, err := os.Open(src.Name()) // a file offset of its own
				require.NoError(t, err)
				t.Cleanup(func() { f.Close() })
				sent = append(sent, sendFileAsync(ctxTimeout(t, 30*time.Second), c, f, len(data)))
			}
			for _, errs := range sent {
				assert.NoError(t, <-errs)
				path := <-got
				b, err := os.ReadFile(path)
				require.NoError(t, err, path)
				assert.True(t, bytes.Equal(data, b))
			}
		})
	}
}

// TestReceiverReadsOnWhenTheSenderSlows: the receiver's reads grow while
// the bytes come fast (to Files.Chunk, 1 MiB here), and each had to end
// within the Keepalive, 2 s. When the link then slowed to 128 KiB/s, a
// read of the last 512 KiB could not, although bytes came every 125 ms,
// and the transfer failed as incomplete ("write ...: i/o timeout"). A
// read that moved bytes before its deadline is now progress: only a
// sender that sends nothing for the Keepalive is cut off.
func TestReceiverReadsOnWhenTheSenderSlows(t *testing.T) {
	for _, mode := range fileModes {
		t.Run(mode.name, func(t *testing.T) {
			c := newCluster(t, 2, func(i int, cfg *transport.Config) {
				cfg.Files.Chunk = 1 << 20
				cfg.Timeouts.Keepalive = 2 * time.Second
			})
			got := receiveToFiles(t, c.Nodes[1])
			const fast, slow = 4 << 20, 512 << 10
			c.Members.Add(cluster.Member{ID: c.ID(1), Addr: slowingProxy(t, c.Nodes[1].Addr().String(), fast, 128<<10)})
			src, data := tempFile(t, fast+slow)
			_, err := c.Nodes[0].SendFile(ctxTimeout(t, 30*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)), mode.opts...)
			require.NoError(t, err, "a sender that sends every 125 ms was cut off")
			path := <-got
			b, err := os.ReadFile(path)
			require.NoError(t, err, path)
			assert.True(t, bytes.Equal(data, b))
		})
	}
}

// TestSendFileToAReceiverThatStopsReading: a receiver whose handler stops
// taking the bytes (its disk stalled, say) held SendFile for ever: its
// sendfile had no deadline, and the kernel keeps a connection whose peer
// advertises a zero window. Timeouts.Write now bounds each write, as it
// does a lane's, and the wait for a verdict after a failed send.
func TestSendFileToAReceiverThatStopsReading(t *testing.T) {
	for _, mode := range fileModes {
		t.Run(mode.name, func(t *testing.T) { sendFileToAReceiverThatStopsReading(t, mode.opts...) })
	}
}

func sendFileToAReceiverThatStopsReading(t *testing.T, opts ...transport.FileOption) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Write = 2 * time.Second
	})
	release := make(chan struct{})
	defer close(release)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		_, _ = io.CopyN(io.Discard, ft.Reader(), 1<<20)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return errors.New("stalled")
	}))
	src, data := tempFile(t, 64<<20) // far more than the sockets' buffers hold
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := sendFileAsync(ctx, c, src, len(data), opts...)
	select {
	case err := <-sent:
		assert.ErrorIs(t, err, transport.ErrIncomplete)
	case <-time.After(20 * time.Second): // the bound is 2 s, and 5 s for the verdict
		cancel()
		<-sent
		t.Fatal("SendFile still blocked 20 s after its receiver stopped reading, with Timeouts.Write 2 s")
	}
}

// TestSendFileToAHandlerThatNeverReturns: a receiver takes every byte and
// verifies them, and then its handler never returns (or the peer stops
// answering). SendFile, with no deadline in its context, waited for the
// verdict for ever; it now waits the verb's request timeout
// (Timeouts.PerVerb, Timeouts.Request), as Request does, and a handler
// that returns within it is not cut off.
func TestSendFileToAHandlerThatNeverReturns(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Timeouts.Request = 500 * time.Millisecond
		cfg.Timeouts.PerVerb = map[transport.Verb]time.Duration{verbBootstrap + 1: 10 * time.Second}
	})
	release := make(chan struct{})
	defer close(release)
	applied := make(chan struct{}, 2)
	handler := transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		if _, err := io.Copy(io.Discard, ft.Reader()); err != nil {
			return err
		}
		applied <- struct{}{}
		if ft.Verb == verbBootstrap+1 {
			time.Sleep(time.Second) // a snapshot applied: longer than Timeouts.Request
			return nil
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	c.Nodes[1].HandleFile(verbBootstrap, handler)
	c.Nodes[1].HandleFile(verbBootstrap+1, handler)
	src, data := tempFile(t, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := sendFileAsync(ctx, c, src, len(data))
	select {
	case err := <-sent:
		select {
		case <-applied: // every byte arrived: the wait was for the verdict
		case <-time.After(5 * time.Second):
			t.Fatalf("the handler never had the bytes; SendFile: %v", err)
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.True(t, isTimeout(err), "%v", err)
	case <-time.After(10 * time.Second): // the bound is 0.5 s
		cancel()
		<-sent
		t.Fatal("SendFile still waits 10 s for the verdict of a handler that never returns, with Timeouts.Request 0.5 s")
	}

	// The verb's own timeout allows for its handler's time.
	n, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap+1, src, 0, int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
}

// TestFileReaderOfExactlyLengthVerifies: a handler that reads exactly
// Length bytes from Reader (io.CopyN, io.ReadFull), every one intact, had
// the transfer failed ("the handler took 1048576 of 1048576 bytes"): the
// checksum was read only by a Read after the last byte. It is now read
// with the last byte.
func TestFileReaderOfExactlyLengthVerifies(t *testing.T) {
	c := newCluster(t, 2, nil)
	got := make(chan []byte, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		var buf bytes.Buffer
		_, err := io.CopyN(&buf, ft.Reader(), ft.Length)
		got <- buf.Bytes()
		return err
	}))
	src, data := tempFile(t, 1<<20)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	assert.NoError(t, err)
	assert.True(t, bytes.Equal(data, <-got))
}

// sendFileAsync sends the first n bytes of src from c's first node to its
// second, and returns a channel that gets SendFile's error.
func sendFileAsync(ctx context.Context, c *transporttest.Cluster, src *os.File, n int, opts ...transport.FileOption) <-chan error {
	sent := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(n), opts...)
		sent <- err
	}()
	return sent
}

// TestSendFileBeyondThePeersConnectionLimitIsOverloaded: with the default
// limits (Security.MaxConnsPerPeer 4, Files.MaxConcurrent 16) a fifth
// transfer at once from one peer is refused at its handshake. SendFile's
// doc promises ErrOverloaded when "the peer receives too many transfers".
func TestSendFileBeyondThePeersConnectionLimitIsOverloaded(t *testing.T) {
	c := newCluster(t, 2, nil)
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		_, err := io.Copy(io.Discard, ft.Reader())
		return err
	}))
	src, data := tempFile(t, 4096)
	var sent []<-chan error
	for range 4 {
		f, err := os.Open(src.Name())
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		sent = append(sent, sendFileAsync(ctxTimeout(t, 20*time.Second), c, f, len(data)))
		<-started
	}
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	close(release)
	for _, s := range sent {
		assert.NoError(t, <-s)
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, transport.ErrOverloaded, "a fifth transfer at once: %v", err)
	assert.NotErrorIs(t, err, transport.ErrRefused, "refused for the moment, not for good")
}

// TestFileReaderInTwoParts: a handler reads a small header of its own
// format with one ft.Reader() and the rest with another. Every byte is
// intact, but each reader checksums only what it read itself: the second
// compares the sender's CRC of the whole range with its part's, and the
// transfer fails as corrupt, counted and logged as the peer's bad input.
func TestFileReaderInTwoParts(t *testing.T) {
	c := newCluster(t, 2, nil)
	got := make(chan []byte, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		head := make([]byte, 16)
		if _, err := io.ReadFull(ft.Reader(), head); err != nil {
			return err
		}
		rest, err := io.ReadAll(ft.Reader())
		got <- append(head, rest...)
		return err
	}))
	src, data := tempFile(t, 1<<20)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	assert.NoError(t, err)
	assert.Equal(t, data, <-got)
	assert.Zero(t, c.Nodes[1].Stats().BadInput[transport.BadInputChecksum], "intact bytes counted as a corrupt peer's")
}

// TestReceiveToAFileOpenedForAppending: a handler appends a transfer to a
// file that already holds bytes (a segment, a log), opened with O_APPEND.
// The bytes go to the file's end, as the kernel writes them, but
// ReceiveTo checksums them from the file's offset, 0 before the first
// write: intact bytes fail as corrupt, blamed on the peer.
func TestReceiveToAFileOpenedForAppending(t *testing.T) {
	c := newCluster(t, 2, nil)
	path := filepath.Join(t.TempDir(), "segment")
	require.NoError(t, os.WriteFile(path, []byte("existing records\n"), 0o600))
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = ft.ReceiveTo(f)
		return err
	}))
	src, data := tempFile(t, 1<<20)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(append([]byte("existing records\n"), data...), b), "the bytes appended")
	assert.Zero(t, c.Nodes[1].Stats().BadInput[transport.BadInputChecksum])
}

// TestCorruptTransferIsReportedAsCorrupt: a handler that does not pass on
// ReceiveTo's error (it returns nil, or its own error without %w) had the
// corrupt transfer reported to the sender as incomplete ("the handler took
// 2097152 of 2097152 bytes") or as a handler error, though the receiver
// knew the bytes did not match and counted them as corrupt.
func TestCorruptTransferIsReportedAsCorrupt(t *testing.T) {
	const size = 2 << 20
	flip := func(total int64, b []byte) ([]byte, bool) {
		if total <= 1<<20 && 1<<20 < total+int64(len(b)) {
			b[1<<20-total] ^= 0x40
		}
		return b, true
	}
	for _, tt := range []struct {
		name   string
		result func(err error) error
	}{
		{"handler returns nil", func(error) error { return nil }},
		{"handler returns its own error", func(err error) error { return fmt.Errorf("restore failed: %v", err) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			dir := t.TempDir()
			c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
				f, err := os.CreateTemp(dir, "dst")
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = ft.ReceiveTo(f)
				return tt.result(err)
			}))
			c.Members.Add(cluster.Member{ID: c.ID(1), Addr: tamperProxy(t, c.Nodes[1].Addr().String(), flip)})
			src, data := tempFile(t, size)
			_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
			require.Error(t, err)
			assert.ErrorIs(t, err, transport.ErrCorrupt, "%v", err)
		})
	}
}

// TestRateLimitedSendFilePastItsDeadline: a rate-limited transfer whose
// context's deadline comes before its last byte fails with the context's
// error, as SendFile's doc says, not as an incomplete transfer ("rate:
// Wait(n=...) would exceed context deadline", before the deadline).
func TestRateLimitedSendFilePastItsDeadline(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) { cfg.Files.RateLimit = 256 << 10 })
	_ = receiveToFiles(t, c.Nodes[1])
	src, data := tempFile(t, 4<<20) // 16 s at 256 KiB/s
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := c.Nodes[0].SendFile(ctx, c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "%v", err)
}

// TestFailedFileTransfersAreCounted: Stats counted only the transfers that
// succeeded (FilesSent, FilesReceived) and, of the failed ones, only the
// corrupt (BadInput): a transfer refused for its verb, failed by its
// handler, or cut short left no trace in either node's counters.
func TestFailedFileTransfersAreCounted(t *testing.T) {
	readers := []*metric.ManualReader{metric.NewManualReader(), metric.NewManualReader()}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.Telemetry.MeterProvider = metric.NewMeterProvider(metric.WithReader(readers[i]))
	})
	src, data := tempFile(t, 64<<10)
	fail := errors.New("disk full")
	for _, tt := range []struct {
		name string
		h    transport.FileHandler
	}{
		{"unknown verb", nil},
		{"handler error", transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error { return fail })},
		{"handler takes half", transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
			_, err := io.CopyN(io.Discard, ft.Reader(), ft.Length/2)
			return err
		})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.Nodes[1].HandleFile(verbBootstrap, tt.h)
			sender, receiver := c.Nodes[0].Stats(), c.Nodes[1].Stats()
			_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
			require.Error(t, err)
			after := c.Nodes[0].Stats()
			assert.Equal(t, sender.FileSendFailures+1, after.FileSendFailures, "the sender counts its failed transfer")
			assert.Equal(t, sender.FilesSent, after.FilesSent)
			// The receiver counts before it answers.
			got := c.Nodes[1].Stats()
			assert.Equal(t, receiver.FileReceiveFailures+1, got.FileReceiveFailures, "the receiver counts the transfer it failed")
			assert.Equal(t, receiver.FilesReceived, got.FilesReceived)
			streamAndFileMetricsAgree(t, c.Nodes[0], readers[0])
			streamAndFileMetricsAgree(t, c.Nodes[1], readers[1])
		})
	}
}

// TestConfigRefusesANonPositiveFileChunk: Files.Chunk -1 passed Validate,
// and every SendFile then spun for ever: each chunk asked sendfile for -1
// bytes, moved none, and did not count as the file ending (0 < -1 is
// false), without a system call on the socket, so neither the context nor
// Close could end it.
func TestConfigRefusesANonPositiveFileChunk(t *testing.T) {
	cfg := validConfig()
	cfg.Files.Chunk = -1
	err := cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Chunk")
	_, err = transport.New(cfg)
	assert.Error(t, err, "New validates too")
}

// TestEmptyTransferNeedsNoRead: a handler with nothing to read in a
// transfer of 0 bytes (an empty snapshot) returns nil. Its sender's
// SendFile failed as incomplete, "the handler took 0 of 0 bytes": only a
// ReceiveTo or a Read read the trailer that follows the bytes.
func TestEmptyTransferNeedsNoRead(t *testing.T) {
	c := newCluster(t, 2, nil)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		if ft.Length == 0 {
			return nil // nothing to restore
		}
		_, err := io.Copy(io.Discard, ft.Reader())
		return err
	}))
	src, _ := tempFile(t, 4096)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, 0)
	assert.NoError(t, err)
	assert.Equal(t, uint64(1), c.Nodes[1].Stats().FilesReceived)
}

// TestFileReaderOfExactlyLengthSeesCorruption: a handler reads exactly
// Length bytes from Reader with io.ReadFull or io.CopyN, the way Reader's
// doc says verifies the transfer, and the bytes do not match the sender's
// checksum. Reader returned ErrCorrupt together with the last bytes, and
// both helpers drop an error that comes with the bytes they asked for:
// the handler saw success and went on with the corrupt bytes (a snapshot
// installed), while its sender was told ErrCorrupt.
func TestFileReaderOfExactlyLengthSeesCorruption(t *testing.T) {
	for _, tt := range []struct {
		name string
		read func(ft *transport.FileTransfer) error
	}{
		{"io.ReadFull", func(ft *transport.FileTransfer) error {
			_, err := io.ReadFull(ft.Reader(), make([]byte, ft.Length))
			return err
		}},
		{"io.CopyN", func(ft *transport.FileTransfer) error {
			_, err := io.CopyN(io.Discard, ft.Reader(), ft.Length)
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 2, nil)
			handled := make(chan error, 1)
			c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
				err := tt.read(ft)
				handled <- err
				return err
			}))
			data := transport.RandomPayload(1, 4096)
			conn := rawFileSender(t, c.Nodes[1].Addr().String(), string(c.ID(0)), verbBootstrap, uint64(len(data)))
			sum := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
			_, err := conn.Write(binary.BigEndian.AppendUint32(bytes.Clone(data), sum^1))
			require.NoError(t, err)
			assert.ErrorIs(t, within(t, handled, 10*time.Second, "the handler's read"), transport.ErrCorrupt,
				"the handler read corrupt bytes as if they were verified")
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			failure, err := wire.ReadFileResult(conn)
			require.NoError(t, err)
			require.NotNil(t, failure)
			assert.Equal(t, wire.FailureCorrupt, failure.Code)
		})
	}
}

// TestDrainAfterAFailedReceiveToIsNotCorruption: ServeFile must consume
// the transfer, so a handler whose ReceiveTo fails drains what is left
// with Reader before it returns ReceiveTo's error. Here ReceiveTo fails
// on the node's own file (opened without read permission, so its
// checksum cannot read the bytes back), with every byte intact. The
// drain's Reader compared the sender's checksum of the whole range with
// its own of the bytes it read itself (none): the transfer failed as
// ErrCorrupt, counted and logged as the peer's corrupt bytes, and the
// sender was told so, instead of the handler's error.
func TestDrainAfterAFailedReceiveToIsNotCorruption(t *testing.T) {
	c := newCluster(t, 2, nil)
	path := filepath.Join(t.TempDir(), "dst")
	handled := make(chan error, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600) // no read permission
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = ft.ReceiveTo(f)
		handled <- err
		_, _ = io.Copy(io.Discard, ft.Reader()) // consume what is left
		return err
	}))
	src, data := tempFile(t, 1<<20)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	require.Error(t, <-handled, "ReceiveTo cannot checksum a file it cannot read")
	require.Error(t, err)
	assert.NotErrorIs(t, err, transport.ErrCorrupt, "intact bytes reported as corrupt: %v", err)
	assert.ErrorIs(t, err, transport.ErrHandler, "the handler's error reaches the sender")
	assert.Zero(t, c.Nodes[1].Stats().BadInput[transport.BadInputChecksum], "intact bytes counted as the peer's bad input")
}

// TestSendFileReportsItsOwnReadError: SendFile cannot read its file (here
// opened write-only; on a failing disk, EIO). It waited for the
// receiver's verdict and returned only that, "remote: incomplete: 0 of
// 1048576 bytes: unexpected EOF": its own error was lost, and the failure
// blamed on the receiver or the network. It now comes with the verdict.
func TestSendFileReportsItsOwnReadError(t *testing.T) {
	c := newCluster(t, 2, nil)
	_ = receiveToFiles(t, c.Nodes[1])
	src, data := tempFile(t, 1<<20)
	f, err := os.OpenFile(src.Name(), os.O_WRONLY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	_, err = c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, f, 0, int64(len(data)))
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EBADF, "the sender's own error is lost: %v", err)
	var remote *transport.RemoteError
	assert.ErrorAs(t, err, &remote, "the receiver's verdict")
}

// TestReceiveToAgainAfterAFailedOne: a handler whose ReceiveTo fails on
// its own file (read-only here; a full disk, say) tries another. The
// failed call had taken bytes from the connection that it could not
// write, so the second waited for bytes that never came (the trailer
// read as data), until the cut-off for a silent sender, or here the
// transfer's deadline: it failed with "use of closed network connection",
// and the sender with no verdict at all. A ReceiveTo after a failed one
// now returns its error at once, as Reader does.
func TestReceiveToAgainAfterAFailedOne(t *testing.T) {
	c := newCluster(t, 2, nil)
	dir := t.TempDir()
	handled := make(chan error, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		path := filepath.Join(dir, "ro")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			return err
		}
		ro, err := os.Open(path) // cannot be written
		if err != nil {
			return err
		}
		defer ro.Close()
		if _, err := ft.ReceiveTo(ro); err == nil {
			return errors.New("ReceiveTo wrote to a read-only file")
		}
		f, err := os.CreateTemp(dir, "dst")
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = ft.ReceiveTo(f)
		handled <- err
		return err
	}))
	src, data := tempFile(t, 1<<20)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	second := within(t, handled, 10*time.Second, "the second ReceiveTo")
	assert.ErrorIs(t, second, syscall.EBADF, "the second ReceiveTo returns the first one's error")
	var remote *transport.RemoteError
	assert.ErrorAs(t, err, &remote, "the sender has the receiver's verdict: %v", err)
	assert.NotErrorIs(t, err, transport.ErrCorrupt)
}

// TestSendFileFailingDuringShutdownsDrainIsNotClosed: a transfer under way
// while its sender's Shutdown drains (waiting here for a request its node
// is handling) is not cut off: Shutdown does not touch it until it closes.
// Its receiver's handler then refuses it; SendFile said ErrClosed ("the
// close cut the transfer off") beside ErrHandler, and ReasonOf named the
// close, though the transport was still open and the peer's handler had
// said no.
func TestSendFileFailingDuringShutdownsDrainIsNotClosed(t *testing.T) {
	c := newCluster(t, 2, nil)
	read, refuse := make(chan struct{}), make(chan struct{})
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		if _, err := io.Copy(io.Discard, ft.Reader()); err != nil {
			return err
		}
		close(read)
		<-refuse
		return errors.New("no room for this snapshot")
	}))
	handling, answer := make(chan struct{}), make(chan struct{})
	c.Nodes[0].Handle(verbEcho, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		close(handling)
		<-answer
		return m.Payload, nil
	}))
	src, data := tempFile(t, 1<<20)
	sent := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].SendFile(context.Background(), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
		sent <- err
	}()
	<-read
	// The sender's node handles a request, so its Shutdown waits.
	go func() { _, _ = c.Nodes[1].Request(ctxTimeout(t, 10*time.Second), c.ID(0), verbEcho, []byte("x")) }()
	<-handling
	shut := make(chan error, 1)
	go func() { shut <- c.Nodes[0].Shutdown(ctxTimeout(t, 10*time.Second)) }()
	waitFor(t, 5*time.Second, "Shutdown begun", func() bool {
		err := c.Nodes[0].Send(context.Background(), c.ID(1), verbEcho, []byte("x"))
		return errors.Is(err, transport.ErrClosed)
	})
	close(refuse)
	err := <-sent
	close(answer)
	require.NoError(t, <-shut)
	require.ErrorIs(t, err, transport.ErrHandler)
	assert.NotErrorIs(t, err, transport.ErrClosed, "the transport was open when the transfer failed: %v", err)
	reason, _ := transport.ReasonOf(err)
	assert.Equal(t, transport.ReasonHandlerError, reason)
}
