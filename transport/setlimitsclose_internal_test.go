package transport

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
)

// TestSetLimitsGrantsNothingAfterCloseReturned: SetLimits grants the
// waiters its new limits let in, and calls their grants on its caller's
// goroutine, which Close did not wait for: a large message's grant ran
// after Close had returned, and gave its room back then, so the figures
// Close left behind were not final. Here a waiter of the test's, queued
// ahead of the message, holds SetLimits between the grants and the
// message's. Close now waits for a SetLimits under way, and a SetLimits
// after Close began changes nothing.
func TestSetLimitsGrantsNothingAfterCloseReturned(t *testing.T) {
	in := Limits{PerConnection: 256 << 10, PerPeer: 1 << 20, Node: 1 << 20}
	n1, n2 := grantingPair(t, in)

	root := n2.inBudget.Root()
	root.Child(math.MaxInt64, false).Overdraw(in.Node) // n2's inbound room, all taken
	entered, release := make(chan struct{}), make(chan struct{})
	w, _ := root.Child(math.MaxInt64, false).WaitFunc(1, func(bool) {
		close(entered)
		<-release
	})
	require.NotNil(t, w, "the test's waiter queues")
	require.NoError(t, n1.Send(context.Background(), "n2", 1, make([]byte, 200<<10))) // large: waits for its grant
	eventually(t, func() bool { return n2.inBudget.Waiting() == 2 }, "the message waits behind the test's waiter")

	roomier := in
	roomier.Node = 4 << 20
	set := make(chan error, 1)
	go func() { set <- n2.SetLimits(Limits{}, roomier) }()
	within(t, entered, 5*time.Second, "SetLimits to call the first grant")

	heldAtClose := closeWhileGranting(t, n2, release, func() { require.NoError(t, <-set) })
	assert.Equal(t, in.Node+1, heldAtClose, "bytes held once Close returned: the test's, and no message's")
	assert.ErrorIs(t, n2.SetLimits(Limits{}, in), ErrClosed, "SetLimits after Close")
}

// TestShutdownGrantsNothingAfterACloseReturned: as
// TestSetLimitsGrantsNothingAfterCloseReturned, for Shutdown, which
// refuses the large requests waiting for room as it begins: a refused
// request's waiter withdrawn lets the waiters behind it in, whose grants
// ran on Shutdown's goroutine, which a Close meanwhile did not wait for.
// A one-way large message behind the request was granted after Close had
// returned.
func TestShutdownGrantsNothingAfterACloseReturned(t *testing.T) {
	in := Limits{PerConnection: 256 << 10, PerPeer: 1 << 20, Node: 1 << 20}
	n1, n2 := grantingPair(t, in)

	root := n2.inBudget.Root()
	filler := in.Node - 200<<10
	root.Child(math.MaxInt64, false).Overdraw(filler) // 200 KiB left: the request does not fit, what is behind it does
	requested := make(chan error, 1)
	go func() {
		_, err := n1.Request(context.Background(), "n2", 1, make([]byte, 250<<10))
		requested <- err
	}()
	eventually(t, func() bool { return n2.inBudget.Waiting() == 1 }, "the request waits for room")
	entered, release := make(chan struct{}), make(chan struct{})
	w, _ := root.Child(math.MaxInt64, false).WaitFunc(1, func(bool) {
		close(entered)
		<-release
	})
	require.NotNil(t, w, "the test's waiter queues behind the request")
	require.NoError(t, n1.Send(context.Background(), "n2", 1, make([]byte, 70<<10))) // large: waits behind both
	eventually(t, func() bool { return n2.inBudget.Waiting() == 3 }, "the one-way message waits behind them")

	shut := make(chan error, 1)
	go func() { shut <- n2.Shutdown(context.Background()) }()
	within(t, entered, 5*time.Second, "Shutdown to call the first grant")

	heldAtClose := closeWhileGranting(t, n2, release, func() { within(t, shut, 5*time.Second, "Shutdown to return") })
	assert.Equal(t, filler+1, heldAtClose, "bytes held once Close returned: the test's, and no message's")
	within(t, requested, 5*time.Second, "the request to end")
}

// closeWhileGranting closes n while a grant holds up its caller (until
// release is closed), then releases it, calls granted, and returns the
// inbound bytes n held as Close returned. Close is given a second to
// return early, as it did before it waited for the grants; no signal
// tells that it waits instead, so after that second the grants go on.
func closeWhileGranting(t *testing.T, n *Transport, release chan struct{}, granted func()) int64 {
	t.Helper()
	var heldAtClose int64
	closed := make(chan struct{})
	go func() {
		n.Close()
		heldAtClose = n.inBudget.Root().Used()
		close(closed)
	}()
	select {
	case <-closed: // Close did not wait for the grants still to be called
	case <-time.After(time.Second): // or it waits for them
	}
	close(release)
	granted()
	within(t, closed, 5*time.Second, "Close to return")
	return heldAtClose
}

// grantingPair starts n1 and n2, members of each other, with inbound
// limits in and messages of up to 256 KiB (those above 64 KiB go on the
// large lane and wait for grants), n2 answering verb 1.
func grantingPair(t *testing.T, in Limits) (n1, n2 *Transport) {
	t.Helper()
	tweak := func(c *Config) {
		c.Memory.MaxMessageSize = 256 << 10
		c.Memory.Inbound = in
	}
	static2 := cluster.NewStatic()
	n2 = startNode(t, "n2", static2, tweak)
	n2.Handle(1, HandlerFunc(func(context.Context, *Message) ([]byte, error) { return nil, nil }))
	n1 = startNode(t, "n1", cluster.NewStatic(cluster.Member{ID: "n2", Addr: n2.Addr().String()}), tweak)
	static2.Add(cluster.Member{ID: "n1", Addr: n1.Addr().String()})
	return n1, n2
}
