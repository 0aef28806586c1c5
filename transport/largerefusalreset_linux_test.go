//go:build linux

package transport_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/transport/transporttest"
	"github.com/internode/internode/wire"
)

// TestLargeRefusalReadBeforeTheConnectionEndsStands: a receiver refuses
// a large message (here as overloaded) while the sender's writer is
// blocked writing another message's part, and the connection then ends.
// The sender's back channel had read the refusal, but the writer, reset
// with the connection, threw away the grants and refusals it had not yet
// applied, and sent the refused message again on the next connection:
// the receiver, which counted it dropped when it refused it, could then
// count it received as well, and a request refused as too large or
// overloaded was retried instead of failing. The refusal now stands: the
// message fails with the receiver's reason, and is not begun again.
func TestLargeRefusalReadBeforeTheConnectionEndsStands(t *testing.T) {
	// The receiver: tiny socket buffers, so that a part of 256 KiB it
	// does not read holds the sender's writer in its write.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })

	const (
		verb      transport.Verb = 60
		firstSize                = 4 << 20
		laterSize                = 128 << 10
	)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	begunAgain := make(chan uint64, 16) // messages begun on a later connection
	refused := make(chan uint64, 1)     // the ID of the message refused
	go func() {
		for first := true; ; first = false {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go fakeLargeReceiver(t, conn, first, refused, begunAgain, done)
		}
	}()

	members := cluster.NewStatic(cluster.Member{ID: "fake", Addr: ln.Addr().String()})
	cfg := transporttest.Config("n1", "test", members)
	cfg.Lanes.Sockets[routing.Large].SendBuffer = 4 << 10
	var dropped = make(chan transport.DroppedMessage, 16)
	cfg.OnDropped = func(d transport.DroppedMessage) { dropped <- d }
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	tr.Start()
	t.Cleanup(func() { tr.Close() })

	require.NoError(t, tr.Send(ctxTimeout(t, 10*time.Second), "fake", verb, make([]byte, firstSize)))
	require.NoError(t, tr.Send(ctxTimeout(t, 10*time.Second), "fake", verb, make([]byte, laterSize)))
	id := within(t, refused, 10*time.Second, "the receiver's refusal")

	deadline := time.After(10 * time.Second)
	for {
		select {
		case d := <-dropped:
			if d.ID != id {
				continue // the first message, cut with its connection
			}
			assert.Equal(t, transport.ReasonOverloaded, d.Reason, "failed with the receiver's reason")
			st := laneStats(t, tr, "fake", routing.Large)
			assert.EqualValues(t, 1, st.Dropped[transport.ReasonOverloaded])
			return
		case again := <-begunAgain:
			if again == id {
				t.Fatalf("message %d, refused, was begun again on the next connection", id)
			}
		case <-deadline:
			t.Fatal("the refused message neither failed nor began again")
		}
	}
}

// fakeLargeReceiver is the acceptor of a large lane. On the first
// connection it reads two FrameLargeBegin, grants the first, waits for
// the first bytes of its part, refuses the second (reported on refused),
// and closes its writing side without reading on until done. On later connections
// it reports the IDs of the messages begun on them.
func fakeLargeReceiver(t *testing.T, conn net.Conn, first bool, refused, begunAgain chan<- uint64, done <-chan struct{}) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	raw, err := wire.ReadHandshake(conn, make([]byte, wire.MaxHandshakeSize))
	if err != nil {
		return
	}
	if _, err := wire.DecodeHello(raw); err != nil {
		return
	}
	if _, err := conn.Write(wire.AppendReply(nil, &wire.Reply{Reason: wire.Accepted, Version: wire.MaxVersion})); err != nil {
		return
	}
	r := bufio.NewReaderSize(conn, wire.FrameHeaderSize) // reads no more than asked
	next := func() (wire.FrameHeader, []byte, bool) {
		var hdr [wire.FrameHeaderSize]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return wire.FrameHeader{}, nil, false
		}
		fh, err := wire.ParseFrameHeader(hdr[:], wire.DefaultMaxFramePayload)
		if err != nil {
			t.Errorf("frame header: %v", err)
			return wire.FrameHeader{}, nil, false
		}
		if fh.Kind == wire.FrameLargeMore {
			return fh, nil, true // its payload is left unread
		}
		payload := make([]byte, fh.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return wire.FrameHeader{}, nil, false
		}
		return fh, payload, true
	}
	if !first {
		for {
			fh, payload, ok := next()
			if !ok {
				return
			}
			if fh.Kind == wire.FrameLargeMore {
				_, _ = io.CopyN(io.Discard, r, int64(fh.Length))
				continue
			}
			if fh.Kind == wire.FrameLargeBegin {
				h, _, err := wire.DecodeHeader(payload, 1<<32-1)
				if err == nil {
					begunAgain <- h.ID
				}
			}
		}
	}
	var begun []wire.FrameHeader
	var ids []uint64
	for len(begun) < 2 {
		fh, payload, ok := next()
		if !ok {
			t.Error("the connection ended before two messages began")
			return
		}
		if fh.Kind != wire.FrameLargeBegin {
			continue // a ping
		}
		h, _, err := wire.DecodeHeader(payload, 1<<32-1)
		if err != nil {
			t.Errorf("header: %v", err)
			return
		}
		begun, ids = append(begun, fh), append(ids, h.ID)
	}
	if _, err := conn.Write(wire.AppendFrameHeader(nil, wire.FrameGrant, begun[0].Stream)); err != nil {
		return
	}
	for { // the header of the first part: the writer is in its write
		fh, _, ok := next()
		if !ok {
			t.Error("the connection ended before the first part")
			return
		}
		if fh.Kind == wire.FrameLargeMore {
			break
		}
	}
	failure := wire.AppendFailure(nil, wire.Failure{Code: wire.FailureOverloaded, Message: "no room"})
	if _, err := conn.Write(append(wire.AppendFrameHeader(nil, wire.FrameRefuse, begun[1].Stream, failure), failure...)); err != nil {
		return
	}
	refused <- ids[1]
	_ = conn.(*net.TCPConn).CloseWrite() // the sender reads the refusal, then the end
	<-done                               // its reading side open, unread, until the test ends
}
