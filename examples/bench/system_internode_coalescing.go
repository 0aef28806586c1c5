package main

import (
	"fmt"

	"github.com/internode/internode/coalescing"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// coalescingVariant returns the constructor of the internode system whose
// small and large lanes use the named coalescing strategy
// (coalescing.ByName with the default 200 µs window); the urgent lane stays
// Disabled, as in DefaultCoalescing. internode itself is the default,
// Adaptive. Metrics are on, as for internode, so that the rows differ by
// strategy only.
func coalescingVariant(name string) func() System {
	factory, err := coalescing.ByName(name, 0)
	if err != nil {
		panic(fmt.Sprintf("bench: coalescing strategy %q: %v", name, err))
	}
	return func() System {
		return newInternode(func(c *transport.Config) {
			c.Lanes.Coalescing = func(lane routing.Lane) coalescing.Strategy {
				if lane == routing.Urgent {
					return coalescing.NewDisabled()
				}
				return factory()
			}
		})
	}
}
