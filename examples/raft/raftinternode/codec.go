package raftinternode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
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
	if len(buf) == 0 {
		// Refused here: ResetBytes ignores a nil slice, and the pooled
		// decoder would go on reading what its previous caller left in a
		// buffer that caller no longer owns.
		return fmt.Errorf("raftinternode: decode %T: no bytes", v)
	}
	d := decoders.Get().(*codec.Decoder)
	defer decoders.Put(d)
	d.ResetBytes(buf)
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("raftinternode: decode %T: %w", v, err)
	}
	if n := d.NumBytesRead(); n != len(buf) {
		// One RPC is one value, as in the AppendEntries codec: bytes after
		// it are a malformed message, not something to ignore.
		return fmt.Errorf("raftinternode: decode %T: %d bytes after the value", v, len(buf)-n)
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
	// maxFrame is the largest frame, all its length field (a uint32) can
	// carry: raft bounds a batch by its count of entries
	// (MaxAppendEntries), not by bytes, so a batch of large entries may
	// be hundreds of MiB, and a follower that refused it would never catch
	// up. A reader allocates as the bytes arrive (readChunk at a time),
	// not as the length claims.
	maxFrame  int64 = math.MaxUint32
	readChunk       = 1 << 20
)

var errFrameTooLarge = errors.New("raftinternode: frame above 4 GiB")

// appendFrame appends a frame carrying v to dst.
func appendFrame(dst []byte, v any) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, statusOK)
	dst, err := encodeAppend(dst, v)
	if err != nil {
		return dst[:start], err
	}
	if int64(len(dst)-start-4) > maxFrame {
		return dst[:start], errFrameTooLarge
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

// readFrame reads one frame into buf (grown as its bytes arrive, so a
// length that lies costs no more than the bytes that came) and returns its
// status, its body and the buffer for reuse.
func readFrame(r *bufio.Reader, buf []byte) (status byte, body, newBuf []byte, err error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, buf, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:4]))
	if n < 1 {
		return 0, nil, buf, errors.New("raftinternode: frame without its status byte")
	}
	n--
	buf = buf[:0]
	for int64(len(buf)) < n {
		more := int(min(n-int64(len(buf)), readChunk))
		buf = slices.Grow(buf, more)
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+more])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // inside the frame
		}
		if err != nil {
			return 0, nil, buf, err
		}
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
