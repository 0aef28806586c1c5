package main

import "github.com/internode/internode/transport"

// singleLaneThreshold is the LargeThreshold of internode-single-lane: the
// highest Config.Validate accepts, since a small-lane message must fit in
// one 256 KiB frame.
const singleLaneThreshold = transport.MaxLargeThreshold

// newInternodeSingleLane returns internode with every message on one
// socket, the baseline of the hol scenario: what a transport without a
// separate large lane does. No LargeThreshold makes a 16 MiB message small,
// so the system asks scenarios (see bulkChunk) to send bulk as messages
// that fit the threshold (256 KiB minus the largest header), which all
// travel on the small lane, in order, with the small messages. That is how
// an application moves bulk data over such a transport: in pieces through
// the same ordered queue.
func newInternodeSingleLane() *internodeSystem {
	s := newInternode(func(c *transport.Config) { c.Lanes.LargeThreshold = singleLaneThreshold })
	s.bulkChunk = singleLaneThreshold - 64 // room for the message header
	return s
}
