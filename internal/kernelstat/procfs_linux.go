package kernelstat

import (
	"fmt"

	"github.com/prometheus/procfs"
)

// readProcfs reads the counters with github.com/prometheus/procfs.
func readProcfs() (Counters, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	self, err := fs.Self()
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	netstat, err := self.Netstat()
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	softnet, err := fs.NetSoftnetStat()
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	return fromProcfs(netstat, softnet)
}

func fromProcfs(netstat procfs.ProcNetstat, softnet []procfs.SoftnetStat) (Counters, error) {
	var c Counters
	for _, f := range []struct {
		name string
		src  *float64
		dst  *uint64
	}{
		{"TCPRcvCollapsed", netstat.TCPRcvCollapsed, &c.RcvCollapsed},
		{"PruneCalled", netstat.PruneCalled, &c.PruneCalled},
		{"RcvPruned", netstat.RcvPruned, &c.RcvPruned},
		{"OfoPruned", netstat.OfoPruned, &c.OfoPruned},
	} {
		if f.src == nil {
			return Counters{}, malformed("netstat has no TcpExt:%s counter", f.name)
		}
		*f.dst = uint64(*f.src)
	}
	if len(softnet) == 0 {
		return Counters{}, malformed("softnet_stat: no CPU lines")
	}
	for _, cpu := range softnet {
		c.SoftnetProcessed += uint64(cpu.Processed)
		c.SoftnetDropped += uint64(cpu.Dropped)
		c.SoftnetTimeSqueeze += uint64(cpu.TimeSqueezed)
	}
	return c, nil
}
