package raftinternode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestAppendCodecFields pins the fields of raft's structs that the
// AppendEntries codec writes. A raft release that adds, removes or
// retypes one fails here: update appendcodec.go (and its version byte).
func TestAppendCodecFields(t *testing.T) {
	want := map[reflect.Type]string{
		reflect.TypeFor[raft.RPCHeader]():             "ProtocolVersion raft.ProtocolVersion, ID []uint8, Addr []uint8",
		reflect.TypeFor[raft.AppendEntriesRequest]():  "RPCHeader raft.RPCHeader, Term uint64, Leader []uint8, PrevLogEntry uint64, PrevLogTerm uint64, Entries []*raft.Log, LeaderCommitIndex uint64",
		reflect.TypeFor[raft.AppendEntriesResponse](): "RPCHeader raft.RPCHeader, Term uint64, LastLog uint64, Success bool, NoRetryBackoff bool",
		reflect.TypeFor[raft.Log]():                   "Index uint64, Term uint64, Type raft.LogType, Data []uint8, Extensions []uint8, AppendedAt time.Time",
	}
	for typ, fields := range want {
		var got []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			got = append(got, f.Name+" "+f.Type.String())
		}
		if g := strings.Join(got, ", "); g != fields {
			t.Errorf("raft.%s has fields\n\t%s\nthe codec knows\n\t%s", typ.Name(), g, fields)
		}
	}
}

func sampleRequests() []*raft.AppendEntriesRequest {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	return []*raft.AppendEntriesRequest{
		{},
		{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n1"), Addr: []byte("n1")}, Term: 7, Leader: []byte("n1")},
		{
			RPCHeader: raft.RPCHeader{ProtocolVersion: -1, ID: []byte{}, Addr: []byte("a")},
			Term:      1 << 63, PrevLogEntry: 41, PrevLogTerm: 6, LeaderCommitIndex: 40,
			Entries: []*raft.Log{
				{Index: 42, Term: 7, Type: raft.LogCommand, Data: []byte("hello"), AppendedAt: at},
				{Index: 43, Term: 7, Type: raft.LogConfiguration, Data: []byte{}, Extensions: []byte("ext")},
				{Index: 44, Term: 7, Type: raft.LogBarrier},
				{Index: 45, Term: 7, Data: bytes.Repeat([]byte{9}, 200<<10)},
			},
		},
	}
}

// sameRequest compares a and b, times by Equal.
func sameRequest(a, b *raft.AppendEntriesRequest) error {
	if len(a.Entries) != len(b.Entries) {
		return fmt.Errorf("%d entries, want %d", len(b.Entries), len(a.Entries))
	}
	ac, bc := *a, *b
	ac.Entries, bc.Entries = nil, nil
	if !reflect.DeepEqual(ac, bc) {
		return fmt.Errorf("got %+v, want %+v", bc, ac)
	}
	for i := range a.Entries {
		la, lb := *a.Entries[i], *b.Entries[i]
		if !la.AppendedAt.Equal(lb.AppendedAt) {
			return fmt.Errorf("entry %d: AppendedAt %v, want %v", i, lb.AppendedAt, la.AppendedAt)
		}
		la.AppendedAt, lb.AppendedAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(la, lb) {
			return fmt.Errorf("entry %d: got %+v, want %+v", i, lb, la)
		}
	}
	return nil
}

func TestAppendCodecRoundTrip(t *testing.T) {
	for i, req := range sampleRequests() {
		buf, err := encodeAppend(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		var got raft.AppendEntriesRequest
		if err := decode(buf, &got); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		clear(buf) // decoded slices must not alias the buffer
		if err := sameRequest(req, &got); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		buf, _ = encodeAppend(nil, req)
		for cut := range min(len(buf), 512) { // every cut of the small ones
			if decode(buf[:cut], new(raft.AppendEntriesRequest)) == nil {
				t.Errorf("request %d cut to %d bytes decoded", i, cut)
				break
			}
		}
	}
	for _, resp := range []*raft.AppendEntriesResponse{
		{},
		{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n2"), Addr: []byte("n2")}, Term: 9, LastLog: 1000, Success: true},
		{Term: 2, NoRetryBackoff: true},
	} {
		buf, err := encodeAppend(nil, resp)
		if err != nil {
			t.Fatal(err)
		}
		var got raft.AppendEntriesResponse
		if err := decode(buf, &got); err != nil {
			t.Fatal(err)
		}
		clear(buf)
		if !reflect.DeepEqual(*resp, got) {
			t.Errorf("got %+v, want %+v", got, *resp)
		}
	}
}

// FuzzDecodeAppendRequest: any input decodes or fails without panicking,
// and what decodes encodes back to something that decodes the same.
func FuzzDecodeAppendRequest(f *testing.F) {
	for _, req := range sampleRequests()[:3] {
		buf, _ := encodeAppend(nil, req)
		f.Add(buf)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var req raft.AppendEntriesRequest
		if decodeAppendRequest(in, &req) != nil {
			return
		}
		buf, err := encodeAppend(nil, &req)
		if err != nil {
			return // a time MarshalBinary refuses
		}
		var again raft.AppendEntriesRequest
		if err := decodeAppendRequest(buf, &again); err != nil {
			t.Fatal(err)
		}
		if err := sameRequest(&req, &again); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkAppendCodec compares the codec with msgpack, as
// NetworkTransport encodes, on a batch of 64 entries of 128 bytes.
func BenchmarkAppendCodec(b *testing.B) {
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n1"), Addr: []byte("n1")}, Term: 3}
	for i := range 64 {
		req.Entries = append(req.Entries, &raft.Log{Index: uint64(i), Term: 3, Data: make([]byte, 128), AppendedAt: time.Now()})
	}
	b.Run("internode", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = appendAppendRequest(buf[:0], req)
			var got raft.AppendEntriesRequest
			if err := decodeAppendRequest(buf, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgpack", func(b *testing.B) {
		b.ReportAllocs()
		e := encoders.Get().(*encoder)
		for b.Loop() {
			e.enc.ResetBytes(&e.scratch)
			if err := e.enc.Encode(req); err != nil {
				b.Fatal(err)
			}
			var got raft.AppendEntriesRequest
			if err := decodeMsgpack(e.scratch, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestReadFrameTakesAnySizeAllocatingAsBytesArrive: raft bounds a batch by
// its count of entries, not by bytes, so an AppendEntries of large entries
// may pass 256 MiB; readFrame refused any frame above that, and the
// follower never caught up (the leader's call timed out, raft sent the
// same batch again). It now takes any length the field can carry, and
// allocates as the bytes arrive: a frame that claims 3 GiB and brings 2
// MiB ends (io.ErrUnexpectedEOF) having grown its buffer to a few MiB.
func TestReadFrameTakesAnySizeAllocatingAsBytesArrive(t *testing.T) {
	for _, claimed := range []uint32{257 << 20, 3 << 30} {
		var frame bytes.Buffer
		frame.Write(binary.BigEndian.AppendUint32(nil, claimed))
		frame.WriteByte(statusOK)
		frame.Write(make([]byte, 2<<20))
		_, _, buf, err := readFrame(bufio.NewReader(&frame), nil)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("a frame of %d MiB cut at 2 MiB: %v, want io.ErrUnexpectedEOF", claimed>>20, err)
		}
		if len(buf) != 2<<20 || cap(buf) > 8<<20 {
			t.Fatalf("a frame of %d MiB cut at 2 MiB: read %d bytes into a buffer of %d", claimed>>20, len(buf), cap(buf))
		}
	}
}

// TestDecodeAppendRequestBoundsItsEntriesByTheirBytes: a frame whose
// entry count is more than its bytes could encode (each entry takes at
// least minEntrySize) is refused before any entry is allocated. The count
// was bounded by the bytes left only, so a bad 1 MiB frame allocated a
// hundred times its size (about 104 bytes a raft.Log) before it failed.
func TestDecodeAppendRequestBoundsItsEntriesByTheirBytes(t *testing.T) {
	frame, err := appendAppendRequest(nil, &raft.AppendEntriesRequest{Term: 1})
	if err != nil {
		t.Fatal(err)
	}
	const rest = 1 << 20
	frame = binary.AppendUvarint(frame[:len(frame)-1], rest/minEntrySize+1) // for the count of 0
	frame = append(frame, make([]byte, rest)...)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err = decodeAppendRequest(frame, new(raft.AppendEntriesRequest))
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errAppendCodec) {
		t.Fatalf("decoded a count its bytes cannot hold: %v", err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 4*rest {
		t.Fatalf("allocated %d MiB to refuse a frame of 1 MiB", allocated>>20)
	}
}
