package routing

import "fmt"

// Lane is one of the outbound connections between an ordered pair of nodes.
// Its numeric value is part of the wire format (it is sent in the handshake).
type Lane uint8

const (
	// Urgent carries small control traffic: heartbeats, gossip, failure
	// responses. It never queues behind bulk traffic.
	Urgent Lane = 0
	// Small carries messages whose encoded size is at most the threshold.
	Small Lane = 1
	// Large carries messages above the threshold.
	Large Lane = 2

	// NumLanes is the number of lanes.
	NumLanes = 3
)

// Lanes lists every lane in order, for iteration.
var Lanes = [NumLanes]Lane{Urgent, Small, Large}

// String returns the lane's name: "urgent", "small" or "large".
func (l Lane) String() string {
	switch l {
	case Urgent:
		return "urgent"
	case Small:
		return "small"
	case Large:
		return "large"
	}
	return fmt.Sprintf("lane(%d)", uint8(l))
}

// Valid reports whether l is a known lane.
func (l Lane) Valid() bool { return l < NumLanes }

// ParseLane returns the lane named s.
func ParseLane(s string) (Lane, error) {
	for _, l := range Lanes {
		if l.String() == s {
			return l, nil
		}
	}
	return 0, fmt.Errorf("routing: unknown lane %q", s)
}
