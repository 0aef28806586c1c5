package netnstest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/internode/internode/transport"
)

// TestNetnsDeafListenerFailsRequestsThenRecovers: n2's address is held by
// a listener that accepts connections and never reads or writes (a hung
// process). n1's requests must fail with ErrConnectionReset within
// Timeouts.Handshake, its one-way messages wait, its Health says n2 is
// down; once the real n2 takes the address back, the waiting one-way
// messages arrive and requests succeed, within the backoff.
func TestNetnsDeafListenerFailsRequestsThenRecovers(t *testing.T) {
	requireNetns(t)
	l := newLab(t, 2)
	const handshake = time.Second
	tune := func(cfg *transport.Config) {
		faultConfig(cfg)
		cfg.Timeouts.Handshake = handshake
	}
	n1 := l.startTransport(1, tune)
	id2 := nodeID(2)

	deaf, err := nsListen(l.namespace(2))("tcp", l.nodeAddr(2))
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	held.Add(1)
	go func() {
		defer held.Done()
		for {
			c, err := deaf.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	stopDeaf := func() {
		deaf.Close()
		held.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	defer stopDeaf()

	var sends int
	for range 5 {
		if err := n1.Send(context.Background(), id2, verbFaultUrgent, []byte("waits")); err != nil {
			t.Fatalf("send: %v", err)
		}
		sends++
	}
	for i := range 3 {
		at := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*handshake)
		_, err := n1.Request(ctx, id2, verbFaultEcho, []byte("hi"))
		cancel()
		took := time.Since(at)
		t.Logf("request %d failed after %v: %v", i, took, err)
		if !errors.Is(err, transport.ErrConnectionReset) {
			t.Errorf("request %d to a deaf listener: %v, not ErrConnectionReset", i, err)
		}
		if took > handshake+time.Second {
			t.Errorf("request %d to a deaf listener waited %v (Handshake %v)", i, took, handshake)
		}
	}
	if st := peerStatus(n1, id2); st != transport.PeerDown {
		t.Errorf("n1 sees n2 behind a deaf listener as %v", st)
	}

	stopDeaf()
	n2 := l.startTransport(2, tune)
	var got counter
	got.serve(n2)
	back := time.Now()
	if _, ok := pollUntil(3*time.Second, func() bool { return got.urgent.Load() >= uint64(sends) }); !ok {
		t.Errorf("%d of %d waiting messages arrived %v after n2 came back", got.urgent.Load(), sends, time.Since(back))
	} else {
		t.Logf("waiting messages arrived %v after n2 came back", time.Since(back))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := n1.Request(ctx, id2, verbFaultEcho, []byte("hi")); err != nil {
		t.Errorf("request once n2 is back: %v", err)
	}
	if _, ok := pollUntil(2*time.Second, func() bool { return peerStatus(n1, id2) == transport.PeerUp }); !ok {
		t.Errorf("n1 sees n2 as %v once back", peerStatus(n1, id2))
	}
}
