package raftinternode

import (
	"encoding/binary"
	"errors"

	"github.com/hashicorp/raft"
)

// AppendEntries, request and response, carries nearly every byte raft
// sends, so it has a codec of its own: field by field, without
// reflection, the entries' bytes decoded in one allocation. The other RPCs
// are rare and stay in msgpack. appendcodec_test.go pins the fields of
// raft's structs: a raft release that adds one fails it, rather than the
// field being dropped on the way.
//
// All integers are varints (encoding/binary); a byte slice is
// uvarint(len+1) then its bytes, 0 standing for nil; a time is its
// MarshalBinary form as a byte slice, nil for the zero time.
//
//	request:  version=1 | header | Term | Leader | PrevLogEntry | PrevLogTerm |
//	          LeaderCommitIndex | uvarint(len(Entries)) | entries
//	entry:    Index | Term | Type (1 byte) | Data | Extensions | AppendedAt
//	response: version=1 | header | Term | LastLog | flags (1: Success, 2: NoRetryBackoff)
//	header:   varint ProtocolVersion | ID | Addr
const appendCodecVersion = 1

var errAppendCodec = errors.New("raftinternode: malformed AppendEntries")

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))+1)
	return append(dst, b...)
}

func appendHeader(dst []byte, h raft.RPCHeader) []byte {
	dst = binary.AppendVarint(dst, int64(h.ProtocolVersion))
	dst = appendBytes(dst, h.ID)
	return appendBytes(dst, h.Addr)
}

func appendAppendRequest(dst []byte, r *raft.AppendEntriesRequest) ([]byte, error) {
	dst = append(dst, appendCodecVersion)
	dst = appendHeader(dst, r.RPCHeader)
	dst = binary.AppendUvarint(dst, r.Term)
	//lint:ignore SA1019 raft still fills Leader for peers of its older versions; the codec carries every field raft sends
	dst = appendBytes(dst, r.Leader)
	dst = binary.AppendUvarint(dst, r.PrevLogEntry)
	dst = binary.AppendUvarint(dst, r.PrevLogTerm)
	dst = binary.AppendUvarint(dst, r.LeaderCommitIndex)
	dst = binary.AppendUvarint(dst, uint64(len(r.Entries)))
	for _, l := range r.Entries {
		dst = binary.AppendUvarint(dst, l.Index)
		dst = binary.AppendUvarint(dst, l.Term)
		dst = append(dst, byte(l.Type))
		dst = appendBytes(dst, l.Data)
		dst = appendBytes(dst, l.Extensions)
		if l.AppendedAt.IsZero() {
			dst = append(dst, 0)
			continue
		}
		at, err := l.AppendedAt.MarshalBinary()
		if err != nil {
			return dst, err
		}
		dst = appendBytes(dst, at)
	}
	return dst, nil
}

func appendAppendResponse(dst []byte, r *raft.AppendEntriesResponse) []byte {
	dst = append(dst, appendCodecVersion)
	dst = appendHeader(dst, r.RPCHeader)
	dst = binary.AppendUvarint(dst, r.Term)
	dst = binary.AppendUvarint(dst, r.LastLog)
	var flags byte
	if r.Success {
		flags |= 1
	}
	if r.NoRetryBackoff {
		flags |= 2
	}
	return append(dst, flags)
}

// appendReader reads the codec's fields from a buffer it owns; the byte
// slices it returns alias that buffer. The first error sticks.
type appendReader struct {
	b   []byte
	err error
}

func (r *appendReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *appendReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *appendReader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *appendReader) bytes() []byte {
	n := r.uvarint()
	if n == 0 || r.err != nil {
		return nil
	}
	n--
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *appendReader) fail() {
	if r.err == nil {
		r.err = errAppendCodec
	}
	r.b = nil
}

func (r *appendReader) version() {
	if v := r.byte(); v != appendCodecVersion && r.err == nil {
		r.err = errAppendCodec
	}
}

func (r *appendReader) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(r.varint()), ID: r.bytes(), Addr: r.bytes()}
}

// minEntrySize is the fewest bytes an entry is encoded in: an index, a
// term, a type, and three lengths, a byte each.
const minEntrySize = 6

// decodeAppendRequest decodes into req. buf is copied once; the entries'
// bytes are slices of that copy, so buf may be reused.
func decodeAppendRequest(buf []byte, req *raft.AppendEntriesRequest) error {
	r := appendReader{b: append([]byte(nil), buf...)}
	r.version()
	req.RPCHeader = r.header()
	req.Term = r.uvarint()
	//lint:ignore SA1019 raft still fills Leader for peers of its older versions; the codec carries every field raft sends
	req.Leader = r.bytes()
	req.PrevLogEntry = r.uvarint()
	req.PrevLogTerm = r.uvarint()
	req.LeaderCommitIndex = r.uvarint()
	n := r.uvarint()
	if n > uint64(len(r.b))/minEntrySize {
		// Refused before the entries are made: each takes about a hundred
		// bytes of memory, and a count that only the frame's length bounded
		// let a bad frame of 1 MiB allocate 105 MiB before failing.
		r.fail()
		return r.err
	}
	if n > 0 {
		logs := make([]raft.Log, n)
		req.Entries = make([]*raft.Log, n)
		for i := range logs {
			l := &logs[i]
			l.Index = r.uvarint()
			l.Term = r.uvarint()
			l.Type = raft.LogType(r.byte())
			l.Data = r.bytes()
			l.Extensions = r.bytes()
			if at := r.bytes(); at != nil {
				if err := l.AppendedAt.UnmarshalBinary(at); err != nil {
					r.fail()
				}
			}
			req.Entries[i] = l
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	return r.err
}

func decodeAppendResponse(buf []byte, resp *raft.AppendEntriesResponse) error {
	r := appendReader{b: buf}
	r.version()
	h := r.header()
	// The header's slices would alias buf, which the caller reuses.
	h.ID, h.Addr = clone(h.ID), clone(h.Addr)
	resp.RPCHeader = h
	resp.Term = r.uvarint()
	resp.LastLog = r.uvarint()
	flags := r.byte()
	resp.Success = flags&1 != 0
	resp.NoRetryBackoff = flags&2 != 0
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	return r.err
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
