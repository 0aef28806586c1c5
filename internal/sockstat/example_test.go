package sockstat_test

import (
	"fmt"
	"net"

	"github.com/internode/internode/internal/sockstat"
)

// The transport measures the send queue after every flush and exports the
// peak once per interval.
func ExamplePeak() {
	var sendQueuePeak sockstat.Peak
	for _, queued := range []int64{0, 4096, 65536, 1024} { // after each flush
		sendQueuePeak.Observe(queued)
	}
	fmt.Println("peak this interval:", sendQueuePeak.TakeAndReset())
	fmt.Println("next interval starts at:", sendQueuePeak.TakeAndReset())
	// Output:
	// peak this interval: 65536
	// next interval starts at: 1024
}

func ExampleProbe() {
	var conn net.Conn // a connected *net.TCPConn; for a *tls.Conn use NetConn()
	probe, err := sockstat.NewProbe(conn.(*net.TCPConn))
	if err != nil {
		return
	}
	var peak sockstat.Peak
	// After each flush:
	if queued, err := probe.SendQueue(); err == nil {
		peak.Observe(int64(queued))
	}
}
