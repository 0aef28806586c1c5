package transport

import (
	"sync"
	"sync/atomic"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/internal/limit"
	"github.com/internode/internode/internal/sockstat"
	"github.com/internode/internode/routing"
)

// peer holds everything this node keeps about one other node: its outbound
// lanes (created on first use) and what arrived from it.
type peer struct {
	id      cluster.NodeID
	t       *Transport
	mu      sync.Mutex // guards creating lanes and stopping
	lanes   [routing.NumLanes]atomic.Pointer[outConn]
	stopped error // why the peer's writers stopped; nil while running
	inbound [routing.NumLanes]inCounters

	outReserve, inReserve *limit.Limit // shared by the peer's lanes
	// Socket queue peaks per lane since the last metrics collection,
	// measured at every write and every read.
	sendPeak, recvPeak [routing.NumLanes]sockstat.Peak
	// The largest depths measured since the transport started, for Stats.
	sendMax, recvMax [routing.NumLanes]sockstat.Peak
	streams          streamState
}

func newPeer(t *Transport, id cluster.NodeID) *peer {
	return &peer{id: id, t: t,
		outReserve: limit.New(t.limitsOut.Load().PerPeer),
		inReserve:  limit.New(t.limitsIn.Load().PerPeer)}
}

// lane returns the outbound connection for lane, starting its writer on
// first use. It returns nil once the peer is stopped.
func (p *peer) lane(lane routing.Lane) *outConn {
	if c := p.lanes[lane].Load(); c != nil {
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped != nil {
		return nil
	}
	if c := p.lanes[lane].Load(); c != nil {
		return c
	}
	c := newOutConn(p.t, p, lane)
	p.lanes[lane].Store(c)
	p.t.wg.Add(1)
	go func() {
		defer p.t.wg.Done()
		c.run()
	}()
	return c
}

// stop makes every writer of the peer exit, failing what they hold with
// err, and waits for them.
func (p *peer) stop(err error) {
	p.mu.Lock()
	if p.stopped == nil {
		p.stopped = err
	}
	var conns []*outConn
	for i := range p.lanes {
		if c := p.lanes[i].Load(); c != nil {
			conns = append(conns, c)
			select {
			case <-c.stop:
			default:
				close(c.stop)
				c.cancel() // a dial in progress gives up at once
			}
			if conn := c.live.Load(); conn != nil {
				conn.Close() // a writer blocked in a write returns
			}
		}
	}
	p.mu.Unlock()
	p.closeStreams()
	for _, c := range conns {
		<-c.done
	}
}

// stopErrIfStopped returns why the peer stopped, or nil while it runs.
func (p *peer) stopErrIfStopped() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

func (p *peer) stopErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped == nil {
		return ErrClosed
	}
	return p.stopped
}
