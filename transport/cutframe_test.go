package transport_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
	"github.com/internode/internode/wire"
)

// TestCutInsideACompleteControlFrameIsMalformed: as for batches
// (TestCutInsideACompleteFrameIsMalformed), a header or a Failure cut
// short inside a frame whose bytes all arrived — a FrameLargeBegin whose
// message header runs past its payload, a FrameLargeCancel or FrameRefuse
// whose Failure has no room for its code or its message length — is not
// the wire format: it is counted as BadInputMalformed, never as
// BadInputTruncated, "a frame cut short by the connection's end".
func TestCutInsideACompleteControlFrameIsMalformed(t *testing.T) {
	header := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: uint32(verbEcho), PayloadLength: 100 << 10})
	for _, tc := range []struct {
		name   string
		lane   routing.Lane
		kind   wire.FrameKind
		stream uint32
		body   []byte
	}{
		{"large begin, empty", routing.Large, wire.FrameLargeBegin, 1, nil},
		{"large begin, header cut", routing.Large, wire.FrameLargeBegin, 1, header[:3]},
		{"large cancel, empty failure", routing.Large, wire.FrameLargeCancel, 1, nil},
		{"refuse, empty failure", routing.Small, wire.FrameRefuse, 1, nil},
		{"refuse, failure length cut", routing.Small, wire.FrameRefuse, 1, []byte{byte(wire.FailureOverloaded), 0x80}},
		// A file header whose header_len says 1 byte, the verb: the
		// rest of its fields are cut inside a header that all arrived.
		{"file header cut", routing.Lane(4), 0, 0, []byte{0x00, 0x01, 0x05}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, node := badFrameNode(t)
			conn := rawConn(t, node)
			reply := handshake(t, conn, validHello(tc.lane))
			require.Equal(t, wire.Accepted, reply.Reason)

			frame := tc.body
			if tc.lane < routing.NumLanes {
				frame = append(wire.AppendFrameHeader(nil, tc.kind, tc.stream, tc.body), tc.body...)
			}
			_, err := conn.Write(frame)
			require.NoError(t, err)
			require.NoError(t, conn.SetDeadline(time.Now().Add(3*time.Second)))
			closedByPeer(t, conn)
			countedMalformedAndServing(t, client, node)
		})
	}
}
