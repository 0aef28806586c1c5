package kernelstat

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// ParseSoftnet parses the format of /proc/net/softnet_stat — one line per
// online CPU of hexadecimal columns, of which the first three are packets
// processed, packets dropped and time squeezes, each a 32-bit counter — and
// returns those three summed over CPUs. Later columns, whose number varies with the kernel
// version, are ignored. Errors wrap ErrMalformed and name the line.
func ParseSoftnet(r io.Reader) (processed, dropped, squeezed uint64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxLine)
	lineNo, cpus := 0, 0
	for sc.Scan() {
		lineNo++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 3 {
			return 0, 0, 0, malformed("softnet_stat line %d: %d columns, want at least 3", lineNo, len(fields))
		}
		var cols [3]uint64
		for i := range cols {
			if cols[i], err = strconv.ParseUint(fields[i], 16, 32); err != nil {
				return 0, 0, 0, malformed("softnet_stat line %d column %d: %.40q is not a 32-bit hexadecimal number", lineNo, i+1, fields[i])
			}
		}
		processed += cols[0]
		dropped += cols[1]
		squeezed += cols[2]
		cpus++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, 0, malformed("softnet_stat line %d: %v", lineNo+1, err)
	}
	if cpus == 0 {
		return 0, 0, 0, malformed("softnet_stat: no CPU lines")
	}
	return processed, dropped, squeezed, nil
}
