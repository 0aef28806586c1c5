package transport_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestFileTransferSlotIsFreeOnceItsSenderHasTheVerdict: a node that
// receives at most one transfer at once (Files.MaxConcurrent 1), and a
// sender that sends its files one after the other, each once the last
// returned. The receiver freed the transfer's slot only after it had
// written the verdict, so the sender, told of its success, could start
// the next transfer before the slot was free, and have it refused with
// ErrOverloaded: about 1 in 40 to 150 in a loop on loopback. Here the
// receiver is held just after it wrote the first transfer's verdict, as
// a busy machine may hold it.
func TestFileTransferSlotIsFreeOnceItsSenderHasTheVerdict(t *testing.T) {
	sendTwiceWithTheFirstVerdictHeld(t, func(cfg *transport.Config) { cfg.Files.MaxConcurrent = 1 }, nil)
}

// TestFileConnectionIsFreeOnceItsSenderHasTheVerdict: as above for the
// connections a peer may have open of one kind (Security.MaxConnsPerPeer,
// here 1): the receiver gave back the transfer's connection only once it
// had closed it, after the verdict, so a sender sending its files one
// after the other (or as many at once as the limit) could have the next
// refused at its handshake, ErrOverloaded: 1 to 7 in 300 with two loops
// at a limit of 2.
func TestFileConnectionIsFreeOnceItsSenderHasTheVerdict(t *testing.T) {
	sendTwiceWithTheFirstVerdictHeld(t, func(cfg *transport.Config) { cfg.Security.MaxConnsPerPeer = 1 }, nil)
}

// TestFileConnectionIsFreeOnceItsSenderHasAFailureOfTheHandlers: as
// above for a transfer whose handler took every byte, verified, and then
// failed (it could not apply them): no byte of it can still arrive, yet
// the receiver kept its connection's place until it had closed the
// connection, after the verdict, as for a failure whose bytes may still
// be arriving. A sender that tried again at once, as a retry loop does,
// was refused at its handshake, ErrOverloaded, instead of having its
// handler try again: 12 to 29 in 30 on loopback at a limit of 1 (at the
// default 4, with four transfers at once).
func TestFileConnectionIsFreeOnceItsSenderHasAFailureOfTheHandlers(t *testing.T) {
	sendTwiceWithTheFirstVerdictHeld(t, func(cfg *transport.Config) { cfg.Security.MaxConnsPerPeer = 1 }, errors.New("ingest failed"))
}

// sendTwiceWithTheFirstVerdictHeld sends two files one after the other
// to a node configured by limit, whose listener holds the connection that
// wrote the first transfer's verdict just after that write; the second
// must succeed. A handler that fails with failure (when not nil), after
// it took and verified every byte, fails both: the second with its
// error, not refused.
func sendTwiceWithTheFirstVerdictHeld(t *testing.T, limit func(*transport.Config), failure error) {
	held, release := make(chan struct{}), make(chan struct{})
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i != 1 {
			return
		}
		limit(cfg)
		cfg.Listen = func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return &verdictHoldingListener{Listener: ln, held: held, release: release, failure: failure != nil}, nil
		}
	})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the cluster's Close
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		if _, err := io.Copy(io.Discard, ft.Reader()); err != nil {
			return err
		}
		return failure
	}))
	src, data := tempFile(t, 64<<10)
	_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	if failure == nil {
		require.NoError(t, err)
	} else {
		require.ErrorIs(t, err, transport.ErrHandler)
	}
	within(t, held, 10*time.Second, "the receiver held after the first verdict")
	_, err = c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, int64(len(data)))
	if failure == nil {
		require.NoError(t, err, "the next transfer, once the first one's sender has its verdict")
	} else {
		require.NotErrorIs(t, err, transport.ErrOverloaded, "the next transfer, once the first one's sender has its verdict")
		require.ErrorIs(t, err, transport.ErrHandler, "the handler fails the next transfer too")
	}
}

// verdictHoldingListener holds the first accepted connection that writes
// a second empty FileResult (a transfer's verdict of success, after the
// answer to its header), or with failure a FileResult that is not empty
// (a failure), just after that write, until release is closed.
type verdictHoldingListener struct {
	net.Listener
	held, release chan struct{}
	failure       bool
	once          atomic.Bool
}

func (l *verdictHoldingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &verdictHoldingConn{Conn: conn, l: l}, nil
}

type verdictHoldingConn struct {
	net.Conn
	l     *verdictHoldingListener
	empty int // empty FileResults written
}

func (c *verdictHoldingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	verdict := false
	if bytes.Equal(b, []byte{0, 0}) {
		c.empty++
		verdict = c.empty == 2 && !c.l.failure
	} else if c.l.failure {
		r := bytes.NewReader(b)
		f, ferr := wire.ReadFileResult(r)
		verdict = ferr == nil && f != nil && r.Len() == 0
	}
	if verdict && c.l.once.CompareAndSwap(false, true) {
		close(c.l.held)
		<-c.l.release
	}
	return n, err
}
