package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/internode/internode/transport"
)

// meshLimits are the transport limits the saturate and idle scenarios give
// every internode node (-out-node, -in-node, -per-peer, -per-conn), in
// bytes; zero keeps the transport's default. PerPeer and PerConn apply to
// both directions.
type meshLimits struct {
	OutNode, InNode, PerPeer, PerConn int64
}

// apply sets the limits in c. When they are too small to hold a message of
// the default MaxMessageSize (Config.Validate refuses that), MaxMessageSize
// drops to half of what they hold: saturate and idle send 128 B and 128 KiB.
func (l meshLimits) apply(c *transport.Config) {
	set := func(dst *int64, v int64) {
		if v > 0 {
			*dst = v
		}
	}
	set(&c.Memory.Outbound.Node, l.OutNode)
	set(&c.Memory.Inbound.Node, l.InNode)
	for _, lim := range []*transport.Limits{&c.Memory.Outbound, &c.Memory.Inbound} {
		set(&lim.PerPeer, l.PerPeer)
		set(&lim.PerConnection, l.PerConn)
	}
	// A message must fit in its peer's and the node's limits.
	room := func(lim transport.Limits) int64 { return min(lim.PerPeer, lim.Node) }
	fits := min(room(c.Memory.Outbound), room(c.Memory.Inbound))
	if fits < int64(c.Memory.MaxMessageSize)+1<<20 {
		c.Memory.MaxMessageSize = int(max(fits/2, 1<<10))
	}
}

// byteSize is a flag.Value for a byte count: a number with an optional
// suffix KiB, MiB or GiB (powers of 1024), as in "32MiB" or "512 KiB".
type byteSize int64

func (b *byteSize) String() string {
	v := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if v != 0 && v%(1<<u.shift) == 0 {
			return strconv.FormatInt(v>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	shift := uint(0)
	for suffix, sh := range map[string]uint{"KiB": 10, "MiB": 20, "GiB": 30} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			s, shift = strings.TrimSpace(rest), sh
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<62)>>shift {
		return fmt.Errorf("want a byte count such as 33554432 or 32MiB")
	}
	*b = byteSize(v << shift)
	return nil
}
