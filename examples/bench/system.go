package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/internode/internode/transport"
)

// System is one messaging implementation under test. Start brings up both
// ends in this process, a sender and a receiver connected over 127.0.0.1;
// Send and Request go from the sender to the receiver.
//
// Start and Close are called once each, from one goroutine. Send and
// Request are called from many goroutines at once, only between Start and
// Close.
type System interface {
	// Start binds, connects and serves. The receiver calls h.OnMessage for
	// each one-way message and echoes each request's payload back.
	Start(ctx context.Context, h Hooks) error
	// Send delivers payload one way. It returns once the system has
	// accepted the message (queued or written); payload is never modified
	// by the caller afterwards, so the system may keep it. An error wrapping
	// ErrBusy means "not accepted, try again later"; any other error means
	// the message was not accepted either.
	Send(ctx context.Context, payload []byte) error
	// Request sends payload and returns the receiver's echo of it.
	Request(ctx context.Context, payload []byte) ([]byte, error)
	// Close stops both ends and waits for every goroutine the system owns.
	Close() error
}

// Hooks are the receiver-side callbacks a System calls.
type Hooks struct {
	// OnMessage is called once per one-way message delivered to the
	// receiver's handler; payload is valid only during the call. It is safe
	// for concurrent use.
	OnMessage func(payload []byte)
}

// WriteCounter is implemented by systems that count their own socket write
// calls (both ends together), so that writes per message can be reported.
type WriteCounter interface {
	Writes() uint64
}

// FailureCounter is implemented by systems that report, after accepting a
// one-way message, that it failed (expired, overloaded at the receiver,
// connection reset...). Such messages are not lost: they are accounted.
// Failures counts one-way messages only (a failed request is already an
// error from Request); the harness consults it only in runs that sent
// one-way messages.
type FailureCounter interface {
	Failures() uint64
}

// ErrBusy is wrapped by a System's Send or Request when the message was
// refused for lack of capacity and may be retried; it is not counted as
// sent.
var ErrBusy = errors.New("bench: system busy")

// systemEntry names a System constructor in the registry.
type systemEntry struct {
	Name string
	Doc  string
	New  func() System
	// OptIn leaves the system out of the default selection: it runs only
	// when named in -systems.
	OptIn bool
}

// systemRegistry lists every system in report order. To add one (say an
// internode variant with another config), write a constructor and add a
// line here.
var systemRegistry = []systemEntry{
	{Name: "internode", Doc: "internode transport, default config", New: func() System { return newInternode(nil) }},
	{Name: "raw-tcp-naive", Doc: "u32 length prefix, one Write per message under a mutex", New: func() System { return newRawTCP(false) }},
	{Name: "raw-tcp-batched", Doc: "shared buffer, one writer, 64 KiB writes (the ceiling)", New: func() System { return newRawTCP(true) }},
	{Name: "grpc-stream", Doc: "grpc-go streams, pass-through codec", New: func() System { return newGRPCStream() }},
	{Name: "grpc-unary", Doc: "grpc-go unary calls, pass-through codec", New: func() System { return newGRPCUnary() }},
	{Name: "internode-wait", Doc: "internode, Send waits for capacity instead of failing with ErrOverloaded", OptIn: true,
		New: func() System { return newInternode(func(c *transport.Config) { c.WaitForCapacity = true }) }},
}

// selectSystems returns the registry entries named in the comma-separated
// list, in registry order; "" or "all" selects every system but the opt-in
// ones.
func selectSystems(list string) ([]systemEntry, error) {
	if list == "" || list == "all" {
		var out []systemEntry
		for _, e := range systemRegistry {
			if !e.OptIn {
				out = append(out, e)
			}
		}
		return out, nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		want[strings.TrimSpace(name)] = true
	}
	var out []systemEntry
	for _, e := range systemRegistry {
		if want[e.Name] {
			out = append(out, e)
			delete(want, e.Name)
		}
	}
	for name := range want {
		return nil, fmt.Errorf("unknown system %q (have %s)", name, systemNames())
	}
	return out, nil
}

func systemNames() string {
	names := make([]string, len(systemRegistry))
	for i, e := range systemRegistry {
		names[i] = e.Name
		if e.OptIn {
			names[i] += " (opt-in)"
		}
	}
	return strings.Join(names, ", ")
}
