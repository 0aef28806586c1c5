package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

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
	// for concurrent use. It may block (overload holds it): the system's
	// handler then blocks with it.
	OnMessage func(payload []byte)
	// EchoDelay is how long the receiver's handler takes before it
	// echoes a request (a disk read, say); the system runs its handlers
	// as it would for such work.
	EchoDelay time.Duration
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

// FileSender is implemented by systems that transfer files (the file
// scenario). SendFile sends the first n bytes of f, from offset 0, to the
// receiver, which writes them into a file of its own; it returns once the
// receiver has them all, or an error. Calls are made one at a time; f's
// offset is the system's to move.
type FileSender interface {
	SendFile(ctx context.Context, f *os.File, n int64) error
}

// fileOnlySystem marks systems that only transfer files: their Send and
// Request fail, and message scenarios skip them.
type fileOnlySystem interface {
	FileSender
	fileOnly()
}

// errFileOnly is what a file-only system's Send and Request return.
var errFileOnly = errors.New("bench: this system only transfers files")

// ErrBusy is wrapped by a System's Send or Request when the message was
// refused for lack of capacity and may be retried; it is not counted as
// sent.
var ErrBusy = errors.New("bench: system busy")

// systemEntry names a System constructor in the registry.
type systemEntry struct {
	Name string
	Doc  string
	New  func() System
	// OptIn leaves the system out of -systems all: it runs only when
	// named in -systems (or in a scenario's default list).
	OptIn bool
}

// systemRegistry lists every system in report order. To add one (say an
// internode variant with another config), write a constructor and add a
// line here, then name it in the Systems of the scenarios that should
// run it by default.
var systemRegistry = []systemEntry{
	{Name: "internode", Doc: "internode transport, default config (Adaptive coalescing), OpenTelemetry SDK metrics and socket measurement on", New: func() System { return newInternode(nil) }},
	{Name: "internode-nometrics", Doc: "internode with the default no-op MeterProvider and DisableSocketMeasurement", New: func() System { return newInternodeNoMetrics() }},
	{Name: "internode-disabled", Doc: "internode, coalescing Disabled on every lane (drain-only batching)", New: coalescingVariant("disabled")},
	{Name: "internode-fixed", Doc: "internode, coalescing Fixed(200 µs) on the small and large lanes", New: coalescingVariant("fixed")},
	{Name: "internode-movingavg", Doc: "internode, coalescing MovingAverage(200 µs) on the small and large lanes", New: coalescingVariant("movingavg")},
	{Name: "internode-timehorizon", Doc: "internode, coalescing TimeHorizon(200 µs) on the small and large lanes", New: coalescingVariant("timehorizon")},
	{Name: "internode-single-lane", Doc: "internode, LargeThreshold 256 KiB (the highest that works); bulk is sent as sub-256 KiB messages so all traffic shares the small lane's socket", New: func() System { return newInternodeSingleLane() }},
	{Name: "internode-unchecked", Doc: "files only: internode, SendFile with Unchecked (no CRC32C on either side, for files that carry their own checksums)", New: func() System {
		s := newInternode(nil)
		s.fileOpts = []transport.FileOption{transport.Unchecked()}
		return internodeFilesOnly{s}
	}},
	{Name: "raw-tcp-naive", Doc: "u32 length prefix, one Write per message under a mutex", New: func() System { return newRawTCP(false) }},
	{Name: "raw-tcp-batched", Doc: "shared buffer, one writer, 64 KiB writes (the ceiling)", New: func() System { return newRawTCP(true) }},
	{Name: "grpc-stream", Doc: "grpc-go streams, pass-through codec", New: func() System { return newGRPCStream() }},
	{Name: "grpc-unary", Doc: "grpc-go unary calls, pass-through codec", New: func() System { return newGRPCUnary() }},
	{Name: "raw-sendfile", Doc: "files only: a connection per file, (*net.TCPConn).ReadFrom(file) → (*os.File).ReadFrom(conn), sendfile(2) and splice(2)", New: func() System { return newRawFile(false) }},
	{Name: "buffered-copy", Doc: "files only: a connection per file, io.CopyBuffer through 32 KiB buffers at both ends", New: func() System { return newRawFile(true) }},
	{Name: "internode-wait", Doc: "internode, Send waits for capacity instead of failing with ErrOverloaded", OptIn: true,
		New: func() System { return newInternode(func(c *transport.Config) { c.Memory.WaitForCapacity = true }) }},
}

// Default system lists of the scenarios.
var (
	baseSystems      = []string{"internode", "raw-tcp-naive", "raw-tcp-batched", "grpc-stream", "grpc-unary"}
	coalescingRows   = []string{"internode-disabled", "internode-fixed", "internode-movingavg", "internode-timehorizon"}
	coalescingVaries = append([]string{"internode"}, coalescingRows...)
)

func findSystem(name string) (systemEntry, bool) {
	for _, e := range systemRegistry {
		if e.Name == name {
			return e, true
		}
	}
	return systemEntry{}, false
}

// checkSystems validates -systems: "" (each scenario's defaults), "all",
// or a comma-separated list of registered names.
func checkSystems(list string) error {
	if list == "" || list == "all" {
		return nil
	}
	for _, name := range strings.Split(list, ",") {
		_, isSystem := findSystem(strings.TrimSpace(name))
		_, isMesh := findMesh(strings.TrimSpace(name))
		if !isSystem && !isMesh {
			return fmt.Errorf("unknown system %q (have %s)", strings.TrimSpace(name), systemNames())
		}
	}
	return nil
}

// systemsFor resolves -systems for one scenario, in registry order: ""
// selects the scenario's default list; "all" every system it supports but
// the opt-in ones; a list, the named systems it supports. skipped names
// the systems of the list the scenario cannot run. For a scenario with
// Measure the names are meshRegistry's (see meshSystems).
func systemsFor(sc *Scenario, list string) (systems []systemEntry, skipped []string, err error) {
	if err := checkSystems(list); err != nil {
		return nil, nil, err
	}
	if sc.Measure != nil {
		systems, skipped = sc.meshSystems(list)
		return systems, skipped, nil
	}
	want := map[string]bool{}
	switch list {
	case "":
		for _, name := range sc.Systems {
			want[name] = true
		}
	case "all":
		for _, e := range systemRegistry {
			want[e.Name] = !e.OptIn
		}
	default:
		for _, name := range strings.Split(list, ",") {
			want[strings.TrimSpace(name)] = true
		}
	}
	for _, e := range systemRegistry {
		if !want[e.Name] {
			continue
		}
		if !sc.supports(e) {
			if list != "all" {
				skipped = append(skipped, e.Name)
			}
			continue
		}
		systems = append(systems, e)
	}
	for _, e := range meshRegistry { // names of meshes only (raw-tcp-mesh)
		if _, ok := findSystem(e.Name); !ok && want[e.Name] && list != "all" {
			skipped = append(skipped, e.Name)
		}
	}
	return systems, skipped, nil
}

func systemNames() string {
	names := make([]string, len(systemRegistry))
	for i, e := range systemRegistry {
		names[i] = e.Name
		if e.OptIn {
			names[i] += " (opt-in)"
		}
	}
	for _, e := range meshRegistry { // each with the scenarios that run it
		if _, ok := findSystem(e.Name); ok {
			continue
		}
		var runIn []string
		for _, sc := range scenarioRegistry {
			if sc.Measure != nil && slices.Contains(sc.Systems, e.Name) {
				runIn = append(runIn, sc.Name)
			}
		}
		names = append(names, e.Name+" ("+strings.Join(runIn, ", ")+")")
	}
	return strings.Join(names, ", ")
}
