package main

import "github.com/internode/internode/transport"

// newInternodeNoMetrics returns internode as a user without OpenTelemetry
// runs it: the default MeterProvider (the global one, a no-op since nobody
// sets it) and no socket queue measurement (no ioctl per write and per
// frame read). The small scenario's internode row, metrics and socket
// measurement on, is compared with it (issue 7: instrumentation costs at
// most 5% of throughput).
func newInternodeNoMetrics() *internodeSystem {
	s := newInternode(func(c *transport.Config) { c.Telemetry.DisableSocketMeasurement = true })
	s.metrics = false
	return s
}
