//go:build race

package sockstat_test

// raceEnabled: the race detector makes sync.Pool drop items at random, so the
// pooled package-level functions allocate now and then.
const raceEnabled = true
