package netnstest

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
)

// repeatCommand parses "repeat <name> <request|send> <peer> <every> <for>
// <timeout> <size> [tag]" (args without the command) and starts the run.
func (n *node) repeatCommand(args []string) (string, error) {
	if len(args) != 7 && len(args) != 8 {
		return "", fmt.Errorf("repeat takes 7 or 8 arguments, got %d", len(args))
	}
	name, kind, peer := args[0], args[1], cluster.NodeID(args[2])
	var durations [3]time.Duration // every, for, timeout
	for i, arg := range args[3:6] {
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return "", fmt.Errorf("bad duration %q", arg)
		}
		durations[i] = d
	}
	every, span, timeout := durations[0], durations[1], durations[2]
	size, err := strconv.Atoi(args[6])
	if err != nil || size < 0 {
		return "", fmt.Errorf("bad size %q", args[6])
	}
	var call func(i int) error
	switch kind {
	case "request":
		if len(args) != 7 {
			return "", fmt.Errorf("repeat request takes no tag")
		}
		call = func(i int) error {
			return n.request(peer, timeout, taggedPayload(fmt.Sprintf("%s-%s", n.id, name), i, size))
		}
	case "send":
		if len(args) != 8 {
			return "", fmt.Errorf("repeat send needs a tag")
		}
		tag := args[7]
		call = func(i int) error { return n.send(peer, timeout, taggedPayload(tag, i, size)) }
	default:
		return "", fmt.Errorf("repeat runs request or send, not %q", kind)
	}
	done, err := n.newRun(name)
	if err != nil {
		return "", err
	}
	n.background.Go(func() { done <- repeat(call, every, span) })
	return "started", nil
}

// repeat begins call(0), call(1), ... one every interval until span has
// passed, each on its own goroutine so that a call waiting out its timeout
// delays neither the next one nor the record of when calls succeed again.
// It returns once every call has returned, with each call in Log, in the
// order they began.
func repeat(call func(i int) error, every, span time.Duration) callsResult {
	var (
		mu    sync.Mutex
		r     callsResult
		calls sync.WaitGroup
	)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	end := time.NewTimer(span)
	defer end.Stop()
issue:
	for i := 0; ; i++ {
		calls.Go(func() {
			start := time.Now()
			err := call(i)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			r.record(start, took, err)
			entry := callRecord{Start: start, Took: took}
			if err != nil {
				entry.Class = failureClass(err)
			}
			r.Log = append(r.Log, entry)
		})
		select {
		case <-ticker.C:
		case <-end.C:
			break issue
		}
	}
	calls.Wait()
	r.sortLog()
	return r
}
