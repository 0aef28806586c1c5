package wire_test

import (
	"bytes"
	"fmt"
	"io"
	"net"

	"github.com/internode/internode/wire"
)

// A writer frames a batch of small messages without copying their
// payloads; a reader checks the frame and takes the messages back out.
func Example() {
	messages := []struct {
		verb    uint32
		payload []byte
	}{
		{7, []byte("hello")},
		{9, []byte("world!")},
	}

	// Writer. The headers go into one scratch buffer, sized so that it is
	// never reallocated while parts still point into it.
	scratch := make([]byte, 0, len(messages)*wire.MaxHeaderSize)
	var parts [][]byte
	for i, m := range messages {
		h := wire.Header{
			Flags:         wire.FlagExpectsResponse,
			ID:            uint64(i + 1),
			Verb:          m.verb,
			CreatedAt:     1_700_000_000_000_000_000,
			TTL:           2_000_000_000, // 2 s, counted from when the frame is written
			PayloadLength: uint32(len(m.payload)),
		}
		start := len(scratch)
		scratch = wire.AppendHeader(scratch, &h)
		parts = append(parts, scratch[start:], m.payload)
	}
	frameHeader := wire.AppendFrameHeader(nil, wire.FrameBatch, 0, parts...)
	var conn bytes.Buffer // a net.Conn in real use: one writev
	bufs := append(net.Buffers{frameHeader}, parts...)
	if _, err := bufs.WriteTo(&conn); err != nil {
		panic(err)
	}

	// Reader. Any error here means: close the connection.
	const maxMessage = 128 << 20
	fh, err := wire.ParseFrameHeader(conn.Next(wire.FrameHeaderSize), wire.DefaultMaxFramePayload)
	if err != nil {
		panic(err)
	}
	payload := conn.Next(int(fh.Length)) // a buffer of fh.Length bytes, filled with io.ReadFull
	if err := fh.Verify(payload); err != nil {
		panic(err)
	}
	for len(payload) > 0 {
		h, n, err := wire.DecodeHeader(payload, maxMessage)
		if err != nil {
			panic(err)
		}
		payload = payload[n:]
		if uint64(len(payload)) < uint64(h.PayloadLength) {
			panic("message runs past its frame")
		}
		body := payload[:h.PayloadLength]
		payload = payload[h.PayloadLength:]
		arrived := int64(5_000_000_000) // the reader's clock as the frame came in
		fmt.Printf("id %d, verb %d, deadline %d, payload %q\n", h.ID, h.Verb, h.Deadline(arrived), body)
	}
	// Output:
	// id 1, verb 7, deadline 7000000000, payload "hello"
	// id 2, verb 9, deadline 7000000000, payload "world!"
}

// The initiator and the acceptor of a connection agree on a version.
func ExampleReadHandshake() {
	var toAcceptor, toInitiator bytes.Buffer // the two directions of a net.Conn

	// Initiator.
	hello, err := wire.AppendHello(nil, &wire.Hello{
		MinVersion: wire.MinVersion, MaxVersion: wire.MaxVersion,
		Lane: 1, Cluster: "orders-prod", Node: "n1",
	})
	if err != nil {
		panic(err)
	}
	toAcceptor.Write(hello)

	// Acceptor: bounded read, then decide.
	buf := make([]byte, wire.MaxHandshakeSize)
	msg, err := wire.ReadHandshake(&toAcceptor, buf)
	if err != nil {
		panic(err)
	}
	h, err := wire.DecodeHello(msg)
	if err != nil {
		panic(err)
	}
	reply := wire.Reply{Reason: wire.UnsupportedVersion, Message: "no common version"}
	if h.Cluster != "orders-prod" {
		reply = wire.Reply{Reason: wire.WrongCluster}
	} else if v, ok := wire.Negotiate(&h); ok {
		reply = wire.Reply{Version: v, Reason: wire.Accepted}
	}
	fmt.Printf("acceptor: %s of %s wants lane %d: %v\n", h.Node, h.Cluster, h.Lane, reply.Reason)
	toInitiator.Write(wire.AppendReply(nil, &reply))

	// Initiator.
	msg, err = wire.ReadHandshake(&toInitiator, buf)
	if err != nil {
		panic(err)
	}
	r, err := wire.DecodeReply(msg)
	if err != nil {
		panic(err)
	}
	fmt.Printf("initiator: %v, version %d\n", r.Reason, r.Version)
	// Output:
	// acceptor: n1 of orders-prod wants lane 1: accepted
	// initiator: accepted, version 3
}

// Trace context travels in the parameter block of a message header.
func ExampleParam() {
	params := wire.AppendParam(nil, "traceparent", []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
	enc := wire.AppendHeader(nil, &wire.Header{ID: 1, Verb: 3, Params: params})

	h, _, err := wire.DecodeHeader(enc, 0)
	if err != nil {
		panic(err)
	}
	tp, ok := wire.Param(h.Params, "traceparent")
	fmt.Println(ok, string(tp))
	// Output:
	// true 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
}

// A failed request is answered with a failure payload.
func ExampleDecodeFailure() {
	payload := wire.AppendFailure(nil, wire.Failure{Code: wire.FailureOverloaded, Message: "peer reserve exhausted"})
	f, err := wire.DecodeFailure(payload)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%v: %s\n", f.Code, f.Message)
	// Output:
	// overloaded: peer reserve exhausted
}

// Inside a smux stream: the opener's verb and data, and how the acceptor
// reads them. A bytes.Buffer stands in for the smux stream.
func ExampleReadStreamOpen() {
	var stream bytes.Buffer

	// Opener: the verb, then (once accepted) its data in chunks and the
	// end marker.
	stream.Write(wire.AppendStreamOpen(nil, 20))
	stream.Write(append(wire.AppendStreamChunkHeader(nil, 5), "hello"...))
	stream.Write(wire.AppendStreamChunkHeader(nil, 0))

	// Acceptor: the verb, then chunks until the end marker.
	verb, err := wire.ReadStreamOpen(&stream)
	if err != nil {
		panic(err)
	}
	fmt.Printf("verb %d, answer % x\n", verb, wire.AppendStreamAccept(nil))
	header := make([]byte, wire.StreamChunkHeaderSize)
	for {
		if _, err := io.ReadFull(&stream, header); err != nil {
			panic(err)
		}
		n, err := wire.ParseStreamChunkHeader(header)
		if err != nil {
			panic(err) // in real use: close the stream
		}
		if n == 0 {
			fmt.Println("end of the opener's data")
			break
		}
		fmt.Printf("chunk %q\n", stream.Next(n))
	}
	// Output:
	// verb 20, answer 00
	// chunk "hello"
	// end of the opener's data
}
