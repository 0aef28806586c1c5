package routing

// DefaultThreshold is the largest encoded message size, in bytes, that
// travels on the Small lane: 64 KiB.
const DefaultThreshold = 64 << 10

// Router picks a lane by encoded message size and per-verb overrides.
//
// A Router is immutable after construction and safe for concurrent use.
type Router struct {
	threshold int
	overrides map[uint32]Lane
}

// NewRouter returns a router that sends messages larger than threshold bytes
// to Large and the rest to Small, except verbs named in overrides, which
// always use their lane. A threshold ≤ 0 means DefaultThreshold.
// The overrides map is copied.
func NewRouter(threshold int, overrides map[uint32]Lane) *Router {
	if threshold <= 0 {
		threshold = DefaultThreshold
	}
	r := &Router{threshold: threshold}
	if len(overrides) > 0 {
		r.overrides = make(map[uint32]Lane, len(overrides))
		for verb, lane := range overrides {
			r.overrides[verb] = lane
		}
	}
	return r
}

// Threshold returns the size above which messages go to Large.
func (r *Router) Threshold() int { return r.threshold }

// Route returns the lane for a message of the given verb and encoded size.
// An override to Urgent or Small is honoured only while the message fits
// within the threshold: a message above it always travels on Large, so that
// no lane meant for small messages ever carries a bulk transfer.
func (r *Router) Route(verb uint32, encodedSize int) Lane {
	if encodedSize > r.threshold {
		return Large
	}
	if lane, ok := r.overrides[verb]; ok {
		return lane
	}
	return Small
}
