//go:build !race

package sockstat_test

const raceEnabled = false
