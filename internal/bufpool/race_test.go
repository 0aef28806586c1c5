//go:build race

package bufpool

// raceEnabled: under the race detector a sync.Pool drops a share of what
// it is given on purpose, so reuse cannot be counted.
const raceEnabled = true
