//go:build linux

package transport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// Verbs of TestAPeerThatStopsReadingIsCutOffAndSaidSo.
const (
	verbDeafOneWay transport.Verb = 140 // one-way, empty, on the large lane: each is granted
	verbDeafAsk    transport.Verb = 141 // request answered with 16 KiB
)

// TestAPeerThatStopsReadingIsCutOffAndSaidSo: a node writes back to the
// peers that connect to it — grants, responses, beats — and cuts off one
// that takes none of it for the back channel's write timeout. A cut made
// by the reader, which writes grants, was counted as the peer's bad input
// (BadInputSilent, "closing connection on bad input"), as though the peer
// had sent nothing; one made by the response writer was not reported at
// all. Both now log why, and neither is bad input.
func TestAPeerThatStopsReadingIsCutOffAndSaidSo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lane  routing.Lane
		frame func(i int) []byte // the peer's i-th frame, each answered on the back channel
	}{
		{"grants", routing.Large, func(i int) []byte {
			h := wire.AppendHeader(nil, &wire.Header{ID: uint64(i + 1), Verb: uint32(verbDeafOneWay)})
			return append(wire.AppendFrameHeader(nil, wire.FrameLargeBegin, uint32(i+1), h), h...)
		}},
		{"responses", routing.Small, func(i int) []byte {
			return requestFrame(uint64(i+1), verbDeafAsk, []byte("hi"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A peer whose receive queue is full can stall its own writes
			// too: the kernel drops the node's segments that acknowledge
			// them, and the node, hearing nothing, rightly cuts it off as
			// silent. Such a run proves nothing either way, and is run
			// again.
			for attempt := 1; ; attempt++ {
				logs, st := cutOffDeafPeer(t, tc.lane, tc.frame)
				if strings.Contains(logs, "bad input") && strings.Contains(logs, "read tcp") && attempt < 5 {
					t.Logf("attempt %d: the peer's own writes stalled; again", attempt)
					continue
				}
				assert.Contains(t, logs, "does not read", "the cut reported")
				assert.Zero(t, st.InboundMalformed, "not reading is not bad input: %v", st.BadInput)
				assert.NotContains(t, logs, "bad input")
				if t.Failed() {
					t.Log(logs)
				}
				return
			}
		})
	}
}

// cutOffDeafPeer runs a node and a peer that connects on lane, writes
// frame after frame (each answered on the back channel) and never reads,
// until the node cuts it off; it returns what the node logged by then,
// and its Stats.
func cutOffDeafPeer(t *testing.T, lane routing.Lane, frame func(i int) []byte) (string, transport.Stats) {
	t.Helper()
	logs := &capturedLogs{}
	c := newCluster(t, 1, func(_ int, cfg *transport.Config) {
		cfg.Security.AcceptUnknownPeers = true
		cfg.Timeouts.Keepalive = 2 * time.Second // the back channel's write timeout
		cfg.Timeouts.Write = time.Second
		cfg.Lanes.Sockets[lane].SendBuffer = 8 << 10
		cfg.Telemetry.Logger = logs.logger()
	})
	defer c.Close()
	n := c.Nodes[0]
	n.Handle(verbDeafOneWay, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) { return nil, nil }))
	answer := make([]byte, 16<<10)
	n.Handle(verbDeafAsk, transport.HandlerFunc(func(context.Context, *transport.Message) ([]byte, error) { return answer, nil }))

	// A small receive buffer from the start: one shrunk once bytes are
	// queued leaves the window open on more than the buffer takes.
	conn := dialAsWith(smallReadBuffer(4<<10), n.Addr().String(), "deaf", lane)
	require.NotNil(t, conn)
	defer conn.Close()
	// The peer writes on until its writes fail: the node cut it off.
	cut := make(chan struct{})
	go func() {
		defer close(cut)
		for i := 0; ; i++ {
			f := frame(i)
			if i%64 == 63 {
				f = wire.AppendFrameHeader(nil, wire.FramePing, 0, nil) // not silent
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := conn.Write(f); err != nil {
				return
			}
		}
	}()
	select {
	case <-cut:
	case <-time.After(30 * time.Second):
		t.Fatal("the peer that does not read was not cut off")
	}
	waitFor(t, 5*time.Second, "the cut logged", func() bool {
		l := logs.String()
		return strings.Contains(l, "does not read") || strings.Contains(l, "bad input")
	})
	return logs.String(), n.Stats()
}
