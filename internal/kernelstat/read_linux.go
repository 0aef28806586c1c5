package kernelstat

import (
	"fmt"

	"github.com/prometheus/procfs"
)

// Read returns the current Counters, from the network namespace of this
// process: /proc/self/net/netstat and /proc/net/softnet_stat, parsed by
// github.com/prometheus/procfs. It is safe for concurrent use.
func Read() (Counters, error) { return readFrom(procfs.DefaultMountPoint, 0) }

// readFrom reads the files of a proc file system mounted at mountPoint,
// those of process pid, or of this process when pid is 0.
func readFrom(mountPoint string, pid int) (Counters, error) {
	fs, err := procfs.NewFS(mountPoint)
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	var proc procfs.Proc
	if pid == 0 {
		proc, err = fs.Self()
	} else {
		proc, err = fs.Proc(pid)
	}
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: %w", err)
	}
	netstat, err := proc.Netstat()
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: reading net/netstat: %w", err)
	}
	softnet, err := fs.NetSoftnetStat()
	if err != nil {
		return Counters{}, fmt.Errorf("kernelstat: reading net/softnet_stat: %w", err)
	}
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
			return Counters{}, malformed("net/netstat has no TcpExt:%s counter", f.name)
		}
		*f.dst = uint64(*f.src)
	}
	if len(softnet) == 0 {
		return Counters{}, malformed("net/softnet_stat has no CPU lines")
	}
	for _, cpu := range softnet {
		c.SoftnetProcessed += uint64(cpu.Processed)
		c.SoftnetDropped += uint64(cpu.Dropped)
		c.SoftnetTimeSqueeze += uint64(cpu.TimeSqueezed)
	}
	return c, nil
}
