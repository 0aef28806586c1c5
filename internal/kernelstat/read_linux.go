package kernelstat

import (
	"fmt"
	"os"
)

// Paths of the files Read parses.
const (
	NetstatPath = "/proc/net/netstat"
	SoftnetPath = "/proc/net/softnet_stat"
)

// Read returns the current Counters from NetstatPath and SoftnetPath. It is
// safe for concurrent use.
func Read() (Counters, error) {
	netstat, err := os.Open(NetstatPath)
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	defer netstat.Close()
	softnet, err := os.Open(SoftnetPath)
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	defer softnet.Close()
	c, err := readCounters(netstat, softnet)
	if err != nil {
		return Counters{}, fmt.Errorf("%w (reading %s and %s)", err, NetstatPath, SoftnetPath)
	}
	return c, nil
}
