package transport

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
)

func TestPeerStatusFromLanes(t *testing.T) {
	at := time.Unix(1000, 0)
	never := LaneHealth{}
	connected := LaneHealth{State: LaneConnected, Since: at}
	reconnected := LaneHealth{State: LaneConnected, Since: at, LastError: "refused"}
	idleAfterUse := LaneHealth{State: LaneIdle, Since: at}
	firstDial := LaneHealth{State: LaneDialing, Since: at}
	redial := LaneHealth{State: LaneDialing, Since: at, ConsecutiveFailures: 2}
	backoff := LaneHealth{State: LaneBackoff, Since: at, ConsecutiveFailures: 1}
	lost := LaneHealth{State: LaneIdle, Since: at, ConsecutiveFailures: 1}
	for _, tc := range []struct {
		name  string
		lanes []LaneHealth
		want  PeerStatus
	}{
		{"never dialled", []LaneHealth{never, never, never}, PeerUnknown},
		{"first dial in progress", []LaneHealth{firstDial, never, never}, PeerUnknown},
		{"connected", []LaneHealth{never, connected, never}, PeerUp},
		{"connected again after failures", []LaneHealth{never, reconnected, never}, PeerUp},
		{"closed for idleness", []LaneHealth{idleAfterUse, never, never}, PeerUp},
		{"one lane backs off", []LaneHealth{connected, backoff, never}, PeerDown},
		{"redialling after a failure", []LaneHealth{redial, never, never}, PeerDown},
		{"lost and not replaced", []LaneHealth{connected, never, lost}, PeerDown},
	} {
		assert.Equal(t, tc.want, statusOf(tc.lanes), tc.name)
	}
}

func TestReadyRules(t *testing.T) {
	for _, tc := range []struct {
		name              string
		h                 Health
		wantAll, wantQuor bool
	}{
		{"alone", Health{Members: 1}, true, true},
		{"all up", Health{Members: 3, Up: 2}, true, true},
		{"one down of three", Health{Members: 3, Up: 1, Down: 1}, false, true},
		{"one unknown of three", Health{Members: 3, Up: 1, Unknown: 1}, false, true},
		{"two down of three", Health{Members: 3, Down: 2}, false, false},
		{"half of four", Health{Members: 4, Up: 1, Down: 2}, false, false},
		{"three of four", Health{Members: 4, Up: 2, Down: 1}, false, true},
		{"closed", Health{Members: 1, Closed: true}, false, false},
	} {
		assert.Equal(t, tc.wantAll, tc.h.Ready(ReadyAll), "%s: all", tc.name)
		assert.Equal(t, tc.wantQuor, tc.h.Ready(ReadyQuorum), "%s: quorum", tc.name)
	}
	assert.False(t, (&Health{Members: 1}).Ready(ReadyRule(9)), "an unknown rule is never ready")
}

// laneHealth's records, step by step, as the writer makes them.
func TestLaneHealthRecords(t *testing.T) {
	var h laneHealth
	at := func(s int) time.Time { return time.Unix(100+int64(s), 0) }
	l := h.snapshot(routing.Small)
	assert.Equal(t, LaneIdle, l.State)
	assert.True(t, l.Since.IsZero())

	h.dialing(at(0))
	h.failed("connection refused", at(1))
	h.backoff(at(1), 3*time.Second)
	l = h.snapshot(routing.Small)
	assert.Equal(t, LaneBackoff, l.State)
	assert.Equal(t, at(1), l.Since)
	assert.Equal(t, at(4), l.RetryAt)
	assert.Equal(t, uint32(1), l.ConsecutiveFailures)
	assert.Equal(t, "connection refused", l.LastError)
	assert.Equal(t, at(1), l.LastErrorAt)

	h.dialing(at(4))
	h.connected(at(5))
	h.wrote(at(6))
	h.read(at(7).UnixNano())
	l = h.snapshot(routing.Small)
	assert.Equal(t, LaneConnected, l.State)
	assert.Equal(t, at(5), l.Since)
	assert.True(t, l.RetryAt.IsZero(), "only while backing off")
	assert.Equal(t, uint32(0), l.ConsecutiveFailures)
	assert.Equal(t, at(6), l.LastWrite)
	assert.Equal(t, at(7), l.LastRead)
	assert.Equal(t, "connection refused", l.LastError, "kept after recovery")

	h.idle(at(8))
	h.failed("connection lost: closed by peer", at(8))
	h.idle(at(9)) // already idle: Since stays
	l = h.snapshot(routing.Small)
	assert.Equal(t, LaneIdle, l.State)
	assert.Equal(t, at(8), l.Since)
	assert.Equal(t, uint32(1), l.ConsecutiveFailures)
	assert.True(t, l.failing())
}

func TestHealthJSON(t *testing.T) {
	h := Health{Node: "n1", Members: 2, Peers: []PeerHealth{{Peer: "n2", Status: PeerDown,
		Lanes: [routing.NumLanes]LaneHealth{{Lane: routing.Urgent, State: LaneBackoff}}}}}
	b, err := json.Marshal(h)
	require.NoError(t, err)
	s := string(b)
	assert.Contains(t, s, `"status":"down"`)
	assert.Contains(t, s, `"state":"backoff"`)
	assert.Contains(t, s, `"lane":"urgent"`)
}
