package main

import (
	"github.com/internode/internode/transport"
	"github.com/internode/internode/wire"
)

// singleLaneThreshold is the LargeThreshold of internode-single-lane: the
// highest that works. Config.Validate accepts up to 1 MiB, but the small
// lane's writer puts each message in one frame and receivers refuse frames
// above wire.DefaultMaxFramePayload (256 KiB) as malformed, closing the
// connection ("frame too large: 1044442 bytes, limit 262144"): any
// LargeThreshold above 256 KiB breaks the small lane (reported to the
// transport's owner).
const singleLaneThreshold = wire.DefaultMaxFramePayload

// newInternodeSingleLane returns internode with every message on one
// socket, the baseline of the hol scenario: what a transport without a
// separate large lane does. No LargeThreshold makes a 16 MiB message small,
// so the system asks scenarios (see bulkChunk) to send bulk as messages
// that fit the threshold (256 KiB minus the largest header), which all
// travel on the small lane, in order, with the small messages. That is how
// an application moves bulk data over such a transport: in pieces through
// the same ordered queue.
func newInternodeSingleLane() *internodeSystem {
	s := newInternode(func(c *transport.Config) { c.LargeThreshold = singleLaneThreshold })
	s.bulkChunk = singleLaneThreshold - wire.MaxHeaderSize
	return s
}
