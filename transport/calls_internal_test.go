package transport

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/internode/internode/routing"
)

// TestPooledCallCarriesNoStaleTick: a call reused after its timer fired
// (its response came as it timed out) does not hand that tick to its next
// request, which would fail with an hour to go. It runs under the timers
// of Go before 1.23 (GODEBUG asynctimerchan=1, the default of a main
// module whose go.mod names an older Go; .ci/run runs it so), whose
// Reset keeps a tick already sent: it fails without stopTimer dropping a
// fired timer. Go 1.23's timers discard the tick, so a default build has
// nothing to test.
func TestPooledCallCarriesNoStaleTick(t *testing.T) {
	if !strings.Contains(os.Getenv("GODEBUG"), "asynctimerchan=1") {
		t.Skip("needs GODEBUG=asynctimerchan=1")
	}
	var tab callTable
	c := tab.newCall("n2", routing.Small)
	tab.add(1, c)
	c.startTimer(time.Millisecond)
	tab.complete(1, "n2", callResult{}) // the response arrives...
	deadline := time.Now().Add(10 * time.Second)
	for len(c.timer.C) == 0 { // ...and the timer fires before the requester looks
		if time.Now().After(deadline) {
			t.Fatal("the timer never fired")
		}
		time.Sleep(100 * time.Microsecond)
	}
	<-c.done // request's select takes the response
	c.stopTimer()
	tab.free(c)

	next := tab.newCall("n2", routing.Small)
	select {
	case <-next.startTimer(time.Hour):
		t.Fatal("a request with an hour to go timed out at once: its pooled call's timer delivered the previous request's tick")
	default:
	}
	next.stopTimer()
	tab.free(next)
}
