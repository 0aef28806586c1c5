package kernelstat

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
