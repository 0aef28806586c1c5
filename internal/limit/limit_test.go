package limit

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLimit(t *testing.T) {
	l := New(100)
	assert.True(t, l.TryAllocate(60))
	assert.False(t, l.TryAllocate(41))
	assert.Equal(t, int64(40), l.AllocateUpTo(1000))
	assert.Equal(t, int64(0), l.AllocateUpTo(1))
	l.Release(100)
	assert.Zero(t, l.Using())
	l.SetLimit(10)
	assert.False(t, l.TryAllocate(11))
	assert.Panics(t, func() { l.Release(1) }, "a double release is caught")
}

func TestTieredTakesOwnFirstThenBothReserves(t *testing.T) {
	tr := Tiered{Own: New(100), Peer: New(50), Node: New(70)}
	g, ok := tr.TryAllocate(120)
	require.True(t, ok)
	assert.Equal(t, Grant{Own: 100, Reserve: 20}, g)
	assert.Equal(t, int64(20), tr.Peer.Using())
	assert.Equal(t, int64(20), tr.Node.Using())

	_, ok = tr.TryAllocate(31) // the peer reserve has 30 left
	assert.False(t, ok)
	assert.Equal(t, int64(100), tr.Own.Using(), "a failed allocation gives back what it took")
	assert.Equal(t, int64(20), tr.Peer.Using())
	assert.Equal(t, int64(20), tr.Node.Using())

	tr.Release(g)
	assert.Zero(t, tr.Own.Using()+tr.Peer.Using()+tr.Node.Using())
}

func TestTieredNodeReserveIsShared(t *testing.T) {
	node := New(100)
	a := Tiered{Own: New(0), Peer: New(80), Node: node}
	b := Tiered{Own: New(0), Peer: New(80), Node: node}
	ga, ok := a.TryAllocate(80)
	require.True(t, ok)
	_, ok = b.TryAllocate(30)
	assert.False(t, ok, "the node reserve is exhausted by a")
	assert.Zero(t, b.Peer.Using())
	gb, ok := b.TryAllocate(20)
	require.True(t, ok)
	a.Release(ga)
	b.Release(gb)
	assert.Zero(t, node.Using())
}

func TestWaitWakesOnRelease(t *testing.T) {
	tr := Tiered{Own: New(10), Peer: New(0), Node: New(0)}
	g, ok := tr.TryAllocate(10)
	require.True(t, ok)
	got := make(chan Grant)
	go func() {
		g, ok := tr.Wait(5, nil, nil)
		if ok {
			got <- g
		}
	}()
	tr.Release(g)
	assert.Equal(t, Grant{Own: 5}, <-got)
}

func TestWaitWakesOnSetLimit(t *testing.T) {
	tr := Tiered{Own: New(0), Peer: New(0), Node: New(0)}
	got := make(chan bool)
	go func() {
		_, ok := tr.Wait(5, nil, nil)
		got <- ok
	}()
	tr.Own.SetLimit(5)
	assert.True(t, <-got)
}

func TestWaitGivesUp(t *testing.T) {
	tr := Tiered{Own: New(0), Peer: New(0), Node: New(0)}
	done := make(chan struct{})
	close(done)
	_, ok := tr.Wait(1, nil, done)
	assert.False(t, ok)
}

func TestConcurrentAllocationsNeverExceed(t *testing.T) {
	tr := Tiered{Own: New(1000), Peer: New(500), Node: New(700)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if g, ok := tr.TryAllocate(int64(1 + i%300)); ok {
					if tr.Own.Using() > 1000 || tr.Peer.Using() > 500 || tr.Node.Using() > 700 {
						t.Error("over a limit")
					}
					tr.Release(g)
				}
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, tr.Own.Using()+tr.Peer.Using()+tr.Node.Using())
}
