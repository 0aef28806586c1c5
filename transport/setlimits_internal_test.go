package transport

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/routing"
)

// doubledLimits returns tr's limits, each doubled.
func doubledLimits(tr *Transport) (out, in Limits) {
	out, in = *tr.limitsOut.Load(), *tr.limitsIn.Load()
	for _, l := range []*Limits{&out, &in} {
		l.PerConnection, l.PerPeer, l.Node = 2*l.PerConnection, 2*l.PerPeer, 2*l.Node
	}
	return out, in
}

// TestSetLimitsReachesALaneMadeMeanwhile: a lane made with the old limits
// and published after SetLimits had looked at its peer's lanes kept the
// old limit for good. SetLimits now looks at each peer's lanes under the
// lock a lane is made and published under, as SetCoalescing does.
func TestSetLimitsReachesALaneMadeMeanwhile(t *testing.T) {
	tr := coreTransport(t, nil)
	p, err := tr.peerFor("n2", true)
	require.NoError(t, err)
	out, in := doubledLimits(tr)

	p.mu.Lock() // as peer.lane does, from making the lane to publishing it
	c := newOutConn(tr, p, routing.Small)
	set := make(chan error, 1)
	go func() { set <- tr.SetLimits(out, in) }()
	for p.outAccount.Limit() != out.PerPeer { // SetLimits has reached this peer
		runtime.Gosched()
	}
	p.lanes[routing.Small].Store(c)
	p.mu.Unlock()
	require.NoError(t, <-set)
	assert.Equal(t, out.forLane(routing.Small), c.account.Limit())
}

// TestSetLimitsReachesAnInboundConnectionMadeMeanwhile: an inbound
// connection made with the old limits and registered after SetLimits had
// gone through the registered ones kept the old limits for good.
// Registering it now sets its limits.
func TestSetLimitsReachesAnInboundConnectionMadeMeanwhile(t *testing.T) {
	tr := coreTransport(t, nil)
	p, err := tr.claimConn("n2", uint8(routing.Small))
	require.NoError(t, err)
	defer tr.releaseConn(p, uint8(routing.Small))
	pc := newPipeConn()
	defer pc.Close()
	defer pc.peer.Close()
	ic := newInConn(tr, p, routing.Small, pc.Conn, tr.offers(uint8(routing.Small)))
	replies := ic.answerer() // made before the change: SetLimits must reach it

	out, in := doubledLimits(tr)
	require.NoError(t, tr.SetLimits(out, in))
	require.True(t, tr.trackInConn(ic, true))
	defer tr.trackInConn(ic, false)
	assert.Equal(t, in.forLane(routing.Small), ic.account.Limit(), "inbound")
	assert.Equal(t, out.forLane(routing.Small), replies.account.Limit(), "its responses")
}
