package transport_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// TestHostileInput throws every kind of hostile input at a node at once
// while a legitimate peer keeps sending requests: every request is
// answered, the heap stays bounded, and once the attack ends the node's
// goroutines return to their baseline.
func TestHostileInput(t *testing.T) {
	c := newCluster(t, 2, func(i int, cfg *transport.Config) {
		cfg.AcceptUnknownPeers = true // the attackers' frames are read
		cfg.HandshakeTimeout = 500 * time.Millisecond
		cfg.MaxPendingHandshakesPerHost = 64
	})
	c.handleAll(verbEcho, func(ctx context.Context, m *transport.Message) ([]byte, error) { return m.Payload, nil })
	target := c.nodes[1].Addr().String()
	// Warm up the legitimate connections, then take the baselines.
	_, err := c.nodes[0].Request(ctxTimeout(t, 5*time.Second), c.id(1), verbEcho, []byte("warm"))
	require.NoError(t, err)
	baseGoroutines := runtime.NumGoroutine()
	var before runtime.MemStats
	runtime.GC()
	runtime.GC() // pooled buffers of earlier tests go with the second
	runtime.ReadMemStats(&before)

	attacks := map[string]func() []byte{
		"random bytes": func() []byte {
			b := make([]byte, 4096)
			_, _ = rand.Read(b)
			return b
		},
		"frame claiming 4 GiB": func() []byte {
			h := hello(routing.Small)
			frame := make([]byte, wire.FrameHeaderSize)
			binary.BigEndian.PutUint32(frame, 1<<32-1)
			return append(h, frame...)
		},
		"bad checksum": func() []byte {
			msg := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbEcho), PayloadLength: 2})
			msg = append(msg, "hi"...)
			frame := append(wire.AppendFrameHeader(nil, wire.FrameBatch, 0, msg), msg...)
			frame[len(frame)-1] ^= 1
			return append(hello(routing.Small), frame...)
		},
		"handshake that never finishes": func() []byte { return hello(routing.Small)[:7] },
		"silence":                       func() []byte { return nil },
	}
	stop := make(chan struct{})
	var attackers sync.WaitGroup
	var attempts atomic.Int64
	for name, payload := range attacks {
		for range 4 {
			attackers.Add(1)
			go func() {
				defer attackers.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					conn, err := net.Dial("tcp", target)
					if err != nil {
						continue
					}
					attempts.Add(1)
					if b := payload(); len(b) > 0 {
						_, _ = conn.Write(b)
					}
					if name == "silence" || name == "handshake that never finishes" {
						// Hold the connection open until the node gives up on it.
						_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
						_, _ = conn.Read(make([]byte, 1))
					}
					conn.Close()
				}
			}()
		}
	}
	// 1,000 idle sockets on top.
	var idle []net.Conn
	for range 1000 {
		if conn, err := net.Dial("tcp", target); err == nil {
			idle = append(idle, conn)
		}
	}
	var peak uint64
	for i := range 200 {
		resp, err := c.nodes[0].Request(ctxTimeout(t, 5*time.Second), c.id(1), verbEcho, []byte{byte(i)})
		require.NoError(t, err, "request %d during the attack", i)
		require.Equal(t, []byte{byte(i)}, resp)
		if i%20 == 0 { // the live heap, not garbage awaiting collection
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	close(stop)
	attackers.Wait()
	for _, conn := range idle {
		conn.Close()
	}
	st := c.nodes[1].Stats()
	t.Logf("attack connections %d; refused %d (%v); malformed %d; heap peak %d MiB over a %d MiB baseline",
		attempts.Load(), st.InboundRefused, st.Refusals, st.InboundMalformed, (peak-min(peak, before.HeapAlloc))>>20, before.HeapAlloc>>20)
	assert.Positive(t, st.InboundMalformed, "bad frames closed their connections")
	assert.Positive(t, st.Refusals[transport.RefusedMalformed])
	assert.Positive(t, st.Refusals[transport.RefusedTooMany], "idle sockets hit the cap")
	assert.Less(t, peak, before.HeapAlloc+64<<20, "the heap stays bounded")
	waitFor(t, 10*time.Second, "goroutines return to their baseline", func() bool {
		return runtime.NumGoroutine() <= baseGoroutines+2
	})
}

func hello(lane routing.Lane) []byte {
	b, err := wire.AppendHello(nil, &wire.Hello{MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		Lane: uint8(lane), Cluster: "test", Node: "mallory"})
	if err != nil {
		panic(err)
	}
	return b
}
