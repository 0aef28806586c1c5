package kernelstat

import "io"

// Counters are the kernel's cumulative counts since boot. See the package
// documentation for what each means. It is a plain value.
type Counters struct {
	RcvCollapsed uint64 // TcpExt:TCPRcvCollapsed
	PruneCalled  uint64 // TcpExt:PruneCalled
	RcvPruned    uint64 // TcpExt:RcvPruned
	OfoPruned    uint64 // TcpExt:OfoPruned

	SoftnetProcessed   uint64 // softnet_stat column 1, summed over CPUs
	SoftnetDropped     uint64 // softnet_stat column 2, summed over CPUs
	SoftnetTimeSqueeze uint64 // softnet_stat column 3, summed over CPUs
}

// readCounters parses the contents of /proc/net/netstat and
// /proc/net/softnet_stat into Counters.
func readCounters(netstat, softnet io.Reader) (Counters, error) {
	var c Counters
	tcpExt, err := ParseNetstat(netstat)
	if err != nil {
		return Counters{}, err
	}
	for _, f := range []struct {
		key string
		dst *uint64
	}{
		{"TcpExt:TCPRcvCollapsed", &c.RcvCollapsed},
		{"TcpExt:PruneCalled", &c.PruneCalled},
		{"TcpExt:RcvPruned", &c.RcvPruned},
		{"TcpExt:OfoPruned", &c.OfoPruned},
	} {
		v, ok := tcpExt[f.key]
		if !ok {
			return Counters{}, malformed("netstat has no %s counter", f.key)
		}
		*f.dst = v
	}
	c.SoftnetProcessed, c.SoftnetDropped, c.SoftnetTimeSqueeze, err = ParseSoftnet(softnet)
	if err != nil {
		return Counters{}, err
	}
	return c, nil
}
