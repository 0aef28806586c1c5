package kernelstat

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// maxLine bounds one line of /proc/net/netstat; real TcpExt lines are a few
// kilobytes.
const maxLine = 1 << 20

// ParseNetstat parses the format of /proc/net/netstat and /proc/net/snmp's
// unsigned counters: pairs of lines, a header naming the counters and a line
// of values, both starting with the same label:
//
//	TcpExt: SyncookiesSent SyncookiesRecv ...
//	TcpExt: 0 0 ...
//
// It returns the values keyed "Label:Name", such as "TcpExt:RcvPruned".
// Errors wrap ErrMalformed and name the line.
func ParseNetstat(r io.Reader) (map[string]uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxLine)
	counters := make(map[string]uint64)
	lineNo := 0
	next := func() ([]string, bool) {
		for sc.Scan() {
			lineNo++
			if fields := strings.Fields(sc.Text()); len(fields) > 0 {
				return fields, true
			}
		}
		return nil, false
	}
	for {
		header, ok := next()
		if !ok {
			break
		}
		label, ok := strings.CutSuffix(header[0], ":")
		if !ok || label == "" {
			return nil, malformed("netstat line %d: starts with %.40q, not a \"Label:\"", lineNo, header[0])
		}
		values, ok := next()
		if !ok {
			if err := sc.Err(); err != nil {
				return nil, malformed("netstat line %d: %v", lineNo+1, err)
			}
			return nil, malformed("netstat line %d: header %q has no line of values", lineNo, label)
		}
		if values[0] != header[0] {
			return nil, malformed("netstat line %d: values labelled %.40q follow header %q", lineNo, values[0], label)
		}
		if len(values) != len(header) {
			return nil, malformed("netstat line %d: %s has %d names but %d values", lineNo, label, len(header)-1, len(values)-1)
		}
		for i, name := range header[1:] {
			v, err := strconv.ParseUint(values[i+1], 10, 64)
			if err != nil {
				return nil, malformed("netstat line %d: %s:%s: %.40q is not an unsigned integer", lineNo, label, name, values[i+1])
			}
			key := label + ":" + name
			if _, dup := counters[key]; dup {
				return nil, malformed("netstat line %d: %s appears twice", lineNo, key)
			}
			counters[key] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, malformed("netstat line %d: %v", lineNo+1, err)
	}
	if len(counters) == 0 {
		return nil, malformed("netstat: no counters")
	}
	return counters, nil
}
