package raftinternode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// AppendEntries travels in a codec of its own (appendcodec.go); the other
// RPC structs in msgpack, through the same codec raft's NetworkTransport
// uses (hashicorp/go-msgpack), so a field raft adds to them travels without
// a change here. Its encoders are reused from a pool, so a message costs
// one reflection walk and no codec set-up. encoding/gob was not chosen:
// each Request is an independent message, and gob sends its type
// descriptors with the first value of every encoder.
var msgpackHandle = &codec.MsgpackHandle{}

// encoder is a pooled msgpack encoder with the scratch buffer it encodes
// into; the result is copied out, so the scratch never leaves the pool.
type encoder struct {
	enc     *codec.Encoder
	scratch []byte
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{scratch: make([]byte, 0, 1024)}
	e.enc = codec.NewEncoderBytes(&e.scratch, msgpackHandle)
	return e
}}

var decoders = sync.Pool{New: func() any {
	return codec.NewDecoderBytes(nil, msgpackHandle)
}}

// encodeAppend appends v's encoding to dst and returns the result.
func encodeAppend(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case *raft.AppendEntriesRequest:
		return appendAppendRequest(dst, v)
	case *raft.AppendEntriesResponse:
		return appendAppendResponse(dst, v), nil
	}
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.enc.ResetBytes(&e.scratch)
	if err := e.enc.Encode(v); err != nil {
		return dst, fmt.Errorf("raftinternode: encode %T: %w", v, err)
	}
	return append(dst, e.scratch...), nil
}

// decode decodes buf into v. Byte slices in v do not alias buf: it may be
// reused once decode returns.
func decode(buf []byte, v any) error {
	switch v := v.(type) {
	case *raft.AppendEntriesRequest:
		return decodeAppendRequest(buf, v)
	case *raft.AppendEntriesResponse:
		return decodeAppendResponse(buf, v)
	}
	return decodeMsgpack(buf, v)
}

func decodeMsgpack(buf []byte, v any) error {
	d := decoders.Get().(*codec.Decoder)
	defer decoders.Put(d)
	d.ResetBytes(buf)
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("raftinternode: decode %T: %w", v, err)
	}
	return nil
}

// Frames on a stream (the append pipeline and InstallSnapshot):
//
//	+---------------------+--------+------------------------+
//	| length (uint32, BE) | status | body (length-1 bytes)  |
//	+---------------------+--------+------------------------+
//
// length counts the status byte and the body. status is statusOK (the body
// is a msgpack RPC struct) or statusError (the body is the responder's
// error text). Requests are always statusOK.
const (
	statusOK    byte = 0
	statusError byte = 1

	frameHeaderLen = 5
	// maxFrame bounds a frame a reader accepts: a batch of raft entries
	// is at most MaxAppendEntries logs, far below it.
	maxFrame = 256 << 20
)

var errFrameTooLarge = errors.New("raftinternode: frame too large")

// appendFrame appends a frame carrying v to dst.
func appendFrame(dst []byte, v any) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, statusOK)
	dst, err := encodeAppend(dst, v)
	if err != nil {
		return dst[:start], err
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst, nil
}

// appendErrorFrame appends a frame carrying the error text of err.
func appendErrorFrame(dst []byte, err error) []byte {
	msg := err.Error()
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(msg)))
	dst = append(dst, statusError)
	return append(dst, msg...)
}

// readFrame reads one frame into buf (grown as needed) and returns its
// status, its body and the buffer for reuse.
func readFrame(r *bufio.Reader, buf []byte) (status byte, body, newBuf []byte, err error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, buf, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if n < 1 || n > maxFrame {
		return 0, nil, buf, errFrameTooLarge
	}
	n--
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, buf, err
	}
	return hdr[4], buf, buf, nil
}

// decodeFrame turns a frame's status and body into v or the remote error.
func decodeFrame(status byte, body []byte, v any) error {
	switch status {
	case statusOK:
		return decode(body, v)
	case statusError:
		return errors.New(string(body))
	default:
		return fmt.Errorf("raftinternode: bad frame status %d", status)
	}
}
