package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/trace"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pathServer answers each byte read from in with one written to out,
// until in ends.
func pathServer(in io.Reader, out io.Writer) {
	b := make([]byte, 1)
	for {
		if _, err := in.Read(b); err != nil {
			return
		}
		_, _ = out.Write(b)
	}
}

// pathClient reads the answers from in, and wakes each caller in turn.
func pathClient(in io.Reader, callers <-chan chan struct{}) {
	b := make([]byte, 1)
	for c := range callers {
		if _, err := in.Read(b); err != nil {
			return
		}
		close(c)
	}
}

// pathCaller writes one request to out and waits for its answer.
func pathCaller(out io.Writer, callers chan<- chan struct{}, done chan<- struct{}) {
	answered := make(chan struct{})
	callers <- answered
	_, _ = out.Write([]byte{1})
	<-answered
	done <- struct{}{}
}

// TestRoundTripHops: round trips over pipes, one caller goroutine each,
// are found in the trace and each hop timed, the hops within the trip.
func TestRoundTripHops(t *testing.T) {
	reqR, reqW, err := os.Pipe()
	require.NoError(t, err)
	respR, respW, err := os.Pipe()
	require.NoError(t, err)
	callers := make(chan chan struct{}, 1)
	var buf bytes.Buffer
	require.NoError(t, trace.Start(&buf))
	served := make(chan struct{})
	go func() { pathServer(reqR, respW); close(served) }()
	go pathClient(respR, callers)
	const trips = 100
	done := make(chan struct{})
	for range trips {
		go pathCaller(reqW, callers, done)
		<-done
	}
	trace.Stop()
	close(callers)
	reqW.Close()
	<-served
	respW.Close()
	reqR.Close()
	respR.Close()

	p, err := roundTrips(&buf, pathRoles{
		caller: "github.com/internode/internode/examples/bench/tracestat.pathCaller",
		server: "github.com/internode/internode/examples/bench/tracestat.TestRoundTripHops.func1",
		client: "github.com/internode/internode/examples/bench/tracestat.pathClient",
	}, 0)
	require.NoError(t, err)
	// A trip whose request the server found without blocking (it had not
	// yet gone back to its read) has no wake of the server to time, and
	// is left out: how many, the scheduler decides (9 of 20 in one CI run
	// on 2 cores), so the bound is loose.
	assert.GreaterOrEqual(t, p.trips, trips/10)
	for h := range numHops {
		require.Len(t, p.hops[h], p.trips, hopNames[h])
	}
	for i := range p.trips {
		total := p.hops[hopTotal][i]
		assert.Positive(t, p.hops[hopCallerWrite][i], "the caller's write")
		assert.Positive(t, p.hops[hopServerWork][i]+p.hops[hopServerQueue][i], "the server ran")
		assert.LessOrEqual(t, p.hops[hopCallerWork][i]+p.hops[hopCallerWrite][i]+p.hops[hopCallerAfter][i], total)
		assert.LessOrEqual(t, p.hops[hopClientWork][i], total)
	}
	var out bytes.Buffer
	p.print(&out)
	assert.Contains(t, out.String(), fmt.Sprintf("%d round trips timed", p.trips))
}
