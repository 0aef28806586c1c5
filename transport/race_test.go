//go:build race

package transport_test

// raceEnabled: the race detector multiplies memory (shadow memory), so RSS
// bounds are checked only without it.
const raceEnabled = true
