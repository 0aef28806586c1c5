package raftinternode

import (
	"fmt"
	"testing"
	"time"
)

// TestPipelineWatchTakesATinyTimeout: a pipeline's watch ticks every
// quarter of Options.Timeout, and a Timeout of 1 to 3 ns made that quarter
// zero: time.NewTicker panicked ("non-positive interval for NewTicker")
// in the pipeline's goroutine, which ends the process. No pipeline opens
// with such a Timeout today (its stream's dial fails first: the deadline
// has passed), so the watch is run here on its own. Before the fix this
// failed with "Timeout 1ns: the watch panicked: non-positive interval for
// NewTicker".
func TestPipelineWatchTakesATinyTimeout(t *testing.T) {
	for _, timeout := range []time.Duration{1, 2, 3} {
		p := &pipeline{
			t:        &Transport{opts: Options{Timeout: timeout}, now: time.Now},
			epoch:    time.Now(),
			slots:    make(chan struct{}, 2),
			shutdown: make(chan struct{}),
		}
		close(p.shutdown) // the watch returns at its first look
		p.wg.Add(1)
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("the watch panicked: %v", r)
				}
			}()
			p.watch()
			return nil
		}()
		if err != nil {
			t.Fatalf("Timeout %v: %v", timeout, err)
		}
	}
}
