package netnstest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/internode/internode/transport"
)

// TestNetnsOwnConnectionStreamAcrossABlackhole: a stream on a connection
// of its own (OwnConnection), each end with bytes written into a
// blackhole and unacknowledged, each end then reading. TCP keep-alive
// never probes a connection with bytes outstanding, and TCP retransmits
// them for about 15 minutes (net.ipv4.tcp_retries2): the Reads must fail
// once those bytes went unacknowledged for Timeouts.Write, as on every
// other connection this node opens (Config.Timeouts.Write: the default
// TCP_USER_TIMEOUT of outbound sockets), not wait for the retransmissions
// to give up.
func TestNetnsOwnConnectionStreamAcrossABlackhole(t *testing.T) {
	requireNft(t)
	l := newLab(t, 2)
	n1, n2 := l.startPair(faultConfig)
	// The acceptor answers each byte once 300 ms have passed: the answer
	// to the last, sent as the path goes, goes into the blackhole.
	served := make(chan error, 1)
	n2.HandleStream(verbFaultStream, transport.StreamHandlerFunc(func(_ context.Context, s *transport.Stream) {
		defer s.Close()
		var b [1]byte
		for {
			if _, err := io.ReadFull(s, b[:]); err != nil {
				served <- err
				return
			}
			time.Sleep(300 * time.Millisecond)
			if _, err := s.Write(b[:]); err != nil {
				served <- err
				return
			}
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := n1.OpenStream(ctx, nodeID(2), verbFaultStream, transport.OwnConnection())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	var b [1]byte
	if _, err := s.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, b[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("b")); err != nil { // answered into the blackhole
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	l.partition(2, partitionByNft)
	cut := time.Now()
	if _, err := s.Write([]byte("c")); err != nil { // written into the blackhole
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(s, b[:])
		readErr <- err
	}()
	// Timeouts.Write, from the last byte written, and slack.
	limit := 3*time.Second + 2*time.Second
	for _, end := range []struct {
		name string
		err  chan error
	}{{"the opener's read", readErr}, {"the acceptor's read", served}} {
		select {
		case err := <-end.err:
			t.Logf("%s failed %v after the cut: %v", end.name, time.Since(cut), err)
		case <-time.After(limit - time.Since(cut)):
			t.Errorf("%s still waits %v after the cut, bytes unacknowledged since (Timeouts.Write %v)", end.name, time.Since(cut), 3*time.Second)
		}
	}
	// Unblock what still waits before the namespaces go.
	s.Close()
	n1.Close()
	n2.Close()
}
