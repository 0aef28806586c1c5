package netnstest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/internode/internode/transport"
)

const verbFaultStream transport.Verb = 304 // a stream, echoed

// TestNetnsStreamAcrossABlackhole: a stream open between two hosts when
// every packet between them starts being dropped: a Read on either end
// must fail within twice Timeouts.Keepalive, a Write must not block past
// Timeouts.Write; and once the path is back, a new stream works.
func TestNetnsStreamAcrossABlackhole(t *testing.T) {
	requireNft(t)
	l := newLab(t, 2)
	n1, n2 := l.startPair(faultConfig)
	served := make(chan error, 4)
	n2.HandleStream(verbFaultStream, transport.StreamHandlerFunc(func(_ context.Context, s *transport.Stream) {
		_, err := io.Copy(s, s)
		served <- err
		s.Close()
	}))
	id2 := nodeID(2)
	open := func() *transport.Stream {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := n1.OpenStream(ctx, id2, verbFaultStream)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	}
	s := open()
	defer s.Close()
	buf := make([]byte, 5)
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	own := open()
	defer own.Close()

	l.partition(2, partitionByNft)
	cut := time.Now()
	readErr := make(chan error, 1)
	go func() {
		_, err := s.Read(buf)
		readErr <- err
	}()
	limit := 2*faultKeepalive + time.Second
	select {
	case err := <-readErr:
		t.Logf("the opener's read failed %v after the cut: %v", time.Since(cut), err)
		if err == nil {
			t.Errorf("read returned no error")
		}
	case <-time.After(limit):
		t.Errorf("the opener's read still waits %v after the cut", time.Since(cut))
	}
	select {
	case err := <-served:
		t.Logf("the acceptor's copy ended %v after the cut: %v", time.Since(cut), err)
	case <-time.After(limit - time.Since(cut)):
		t.Errorf("the acceptor's stream still runs %v after the cut", time.Since(cut))
	}
	l.heal(2, partitionByNft)
	healed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s2, err := n1.OpenStream(ctx, id2, verbFaultStream)
	if err != nil {
		t.Fatalf("open after the heal: %v", err)
	}
	defer s2.Close()
	_ = s2.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := s2.Write([]byte("again")); err != nil {
		t.Fatalf("write after the heal: %v", err)
	}
	if _, err := io.ReadFull(s2, buf); err != nil {
		t.Fatalf("read after the heal: %v", err)
	}
	t.Logf("a new stream echoed %v after the heal", time.Since(healed))
}
