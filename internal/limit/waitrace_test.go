package limit

import (
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
)

// TestBudgetWaitGivenUpAsItIsGranted: waits given up (their done closed)
// at the moment room comes for them, by Release or a raised limit, either
// hold their bytes and say so, or hold nothing: once every holder gives
// back, every account is empty and no one waits.
func TestBudgetWaitGivenUpAsItIsGranted(t *testing.T) {
	for seed := range uint64(200) {
		synctest.Test(t, func(t *testing.T) { waitGivenUpAsItIsGranted(t, seed) })
	}
}

func waitGivenUpAsItIsGranted(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 3))
	b := NewBudget(100)
	p := b.Root().Child(80, false)
	c := p.Child(60, true)
	b.Root().Overdraw(100) // full
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got []int64
	var dones []chan struct{}
	for range 6 {
		done := make(chan struct{})
		dones = append(dones, done)
		n := int64(1 + r.IntN(50))
		wg.Go(func() {
			if c.Wait(n, done, nil) {
				mu.Lock()
				got = append(got, n)
				mu.Unlock()
			}
		})
	}
	synctest.Wait()
	if b.Waiting() != 6 {
		t.Fatalf("seed %d: %d wait", seed, b.Waiting())
	}
	order := r.Perm(len(dones))
	wg.Go(func() {
		if r.IntN(2) == 0 {
			b.Root().Release(100)
		} else {
			b.Root().SetLimit(400)
			b.Root().Release(100)
		}
	})
	for _, i := range order {
		close(dones[i])
	}
	wg.Wait()
	mu.Lock()
	for _, n := range got {
		c.Release(n)
	}
	mu.Unlock()
	if b.Waiting() != 0 || b.queued.Load() != 0 {
		t.Fatalf("seed %d: %d wait, queued %d", seed, b.Waiting(), b.queued.Load())
	}
	for _, x := range []*Account{b.Root(), p, c} {
		if x.Used() != 0 {
			t.Fatalf("seed %d: holds %d", seed, x.Used())
		}
	}
}

// TestBudgetLoweredLimitWaiterWokenAsRoomReturns: a limit lowered below
// what is held; a waiter is granted once enough is given back, not before,
// and one whose n the raised limit lets in at once is granted at once.
func TestBudgetLoweredLimitWaiterWokenAsRoomReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := NewBudget(100)
		c := b.Root().Child(100, false)
		if !c.TryTake(90) {
			t.Fatal("take")
		}
		b.Root().SetLimit(50)
		granted := make(chan bool, 1)
		go func() { granted <- c.Wait(30, nil, nil) }()
		synctest.Wait()
		c.Release(30) // 60 held: 30 more do not fit under 50
		synctest.Wait()
		select {
		case <-granted:
			t.Fatal("granted above the lowered limit")
		default:
		}
		c.Release(40) // 20 held
		synctest.Wait()
		if !<-granted {
			t.Fatal("not granted")
		}
		go func() { granted <- c.Wait(60, nil, nil) }() // 50 held with it: never under 50
		synctest.Wait()
		if <-granted {
			t.Fatal("granted what can never fit")
		}
		go func() { granted <- c.Wait(40, nil, nil) }()
		synctest.Wait()
		b.Root().SetLimit(100)
		synctest.Wait()
		if !<-granted {
			t.Fatal("not granted by the raised limit")
		}
		c.Release(90)
		if b.Root().Used() != 0 {
			t.Fatalf("holds %d", b.Root().Used())
		}
	})
}
