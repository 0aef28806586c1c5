package transport_test

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/internode/internode/transport"
)

// TestAFileTransferWhoseHeaderComesAsShutdownBeginsIsRefused: a node
// whose Shutdown has begun refuses the file transfers peers begin, as
// its doc says (ErrOverloaded at their SendFile): their connections'
// handshakes are refused. A transfer whose connection was handshaken
// just before, its header arriving once the Shutdown had begun, was
// accepted instead and its handler started, for the Shutdown's close to
// cut it off. It is refused ErrOverloaded too, as a stream opened in a
// session already open is.
func TestAFileTransferWhoseHeaderComesAsShutdownBeginsIsRefused(t *testing.T) {
	dialer := &headerHeldDialer{reached: make(chan struct{}), release: make(chan struct{})}
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		if i == 0 {
			cfg.Dialer = dialer
		}
	})
	started := make(chan struct{}, 1)
	c.Nodes[1].HandleFile(verbBootstrap, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		started <- struct{}{}
		f, err := os.CreateTemp(t.TempDir(), "dst")
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = ft.ReceiveTo(f)
		return err
	}))
	src, _ := tempFile(t, 1<<20)

	dialer.armed.Store(true) // the transfer's connection: its header is held
	sent := make(chan error, 1)
	go func() {
		_, err := c.Nodes[0].SendFile(ctxTimeout(t, 10*time.Second), c.ID(1), verbBootstrap, src, 0, 1<<20)
		sent <- err
	}()
	<-dialer.reached // handshaken, the header not written yet

	finish := shutdownHeldOpen(t, c)
	close(dialer.release)
	err := within(t, sent, 10*time.Second, "SendFile")
	assert.ErrorIs(t, err, transport.ErrOverloaded, "a transfer whose header came once Shutdown began")
	select {
	case <-started:
		t.Error("its handler started on a node shutting down")
	default:
	}
	finish()
}

// headerHeldDialer dials; once armed, it holds the second write of the
// next connection it dials (a file transfer's header, after its
// handshake's hello) until release is closed.
type headerHeldDialer struct {
	d                net.Dialer
	armed            atomic.Bool
	reached, release chan struct{}
}

func (d *headerHeldDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := d.d.DialContext(ctx, network, address)
	if err != nil || !d.armed.CompareAndSwap(true, false) {
		return conn, err
	}
	return &headerHeldConn{Conn: conn, d: d}, nil
}

type headerHeldConn struct {
	net.Conn
	d      *headerHeldDialer
	writes int
}

func (c *headerHeldConn) Write(b []byte) (int, error) {
	if c.writes++; c.writes == 2 {
		close(c.d.reached)
		<-c.d.release
	}
	return c.Conn.Write(b)
}
