package replication

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/internode/internode/transport"
)

// Verb is the transport verb of replicated writes. Both ends must agree on
// it; change it if it clashes with one of your own verbs.
const Verb transport.Verb = 200

// ErrMalformed is returned for bytes that are not an encoded write or a
// valid data file.
var ErrMalformed = errors.New("replication: malformed write")

// Mutation is one write of one key, as sent to every replica.
type Mutation struct {
	// Timestamp orders writes of the same key: the largest wins. The
	// coordinator's clock in nanoseconds, moved on where needed so that
	// each coordinator's stamps increase (see Config.Now); writes of one
	// key from two coordinators are ordered by their clocks.
	Timestamp uint64
	Key       string
	Value     []byte
}

// The encoding of a Mutation, integers as unsigned varints:
//
//	version (1) | timestamp | len(key) | key | value (the rest)
//
// The value goes last, unprefixed, so that it is not copied twice.
const mutationVersion = 1

// maxKeyLen bounds keys, so a malformed length cannot make a replica
// allocate without limit.
const maxKeyLen = 64 << 10

// AppendMutation appends the encoding of m to dst.
func AppendMutation(dst []byte, m Mutation) []byte {
	dst = binary.AppendUvarint(dst, mutationVersion)
	dst = binary.AppendUvarint(dst, m.Timestamp)
	dst = binary.AppendUvarint(dst, uint64(len(m.Key)))
	dst = append(dst, m.Key...)
	return append(dst, m.Value...)
}

// DecodeMutation decodes a write. The returned Value aliases b: copy it to
// keep it beyond b's lifetime (Store does).
func DecodeMutation(b []byte) (Mutation, error) {
	var m Mutation
	version, n := binary.Uvarint(b)
	if n <= 0 || version != mutationVersion {
		return m, fmt.Errorf("%w: bad version", ErrMalformed)
	}
	b = b[n:]
	if m.Timestamp, n = binary.Uvarint(b); n <= 0 {
		return m, fmt.Errorf("%w: truncated timestamp", ErrMalformed)
	}
	b = b[n:]
	keyLen, n := binary.Uvarint(b)
	if n <= 0 || keyLen > maxKeyLen || keyLen > uint64(len(b)-n) {
		return m, fmt.Errorf("%w: bad key length", ErrMalformed)
	}
	b = b[n:]
	m.Key = string(b[:keyLen])
	m.Value = b[keyLen:]
	return m, nil
}

// Store is one node's replica: an in-memory map from key to the newest
// value written. It is safe for concurrent use.
//
// As a transport.Handler (for Verb) it applies each write it receives and
// acknowledges it with an empty response.
type Store struct {
	mu     sync.RWMutex
	values map[string]versioned
	bytes  int64 // sum of the values' lengths
}

type versioned struct {
	timestamp uint64
	value     []byte
}

var _ transport.Handler = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store { return &Store{values: make(map[string]versioned)} }

// ServeMessage implements transport.Handler: it applies the write in
// m.Payload and acknowledges it.
func (s *Store) ServeMessage(ctx context.Context, m *transport.Message) ([]byte, error) {
	mut, err := DecodeMutation(m.Payload)
	if err != nil {
		return nil, err
	}
	s.Apply(mut)
	return nil, nil
}

// Apply stores m unless the store holds a newer write of its key, and
// reports whether it did. Of two writes with the same timestamp the larger
// value wins. It copies m.Value.
func (s *Store) Apply(m Mutation) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.values[m.Key]
	// Two coordinators can stamp different writes with the same timestamp:
	// keeping whichever came first would leave replicas that received them
	// in different orders with different values for ever. Comparing the
	// values, as Cassandra does, picks the same one everywhere.
	if ok && (old.timestamp > m.Timestamp ||
		old.timestamp == m.Timestamp && bytes.Compare(old.value, m.Value) >= 0) {
		return false
	}
	s.values[m.Key] = versioned{timestamp: m.Timestamp, value: append([]byte(nil), m.Value...)}
	s.bytes += int64(len(m.Value)) - int64(len(old.value))
	return true
}

// Get returns the newest value of key and its timestamp. The value must not
// be modified.
func (s *Store) Get(key string) (value []byte, timestamp uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.values[key]
	return v.value, v.timestamp, ok
}

// Len returns the number of keys.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.values)
}

// Bytes returns the total size of the stored values.
func (s *Store) Bytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.bytes
}

// The data file, the unit Bootstrap copies between nodes with
// SendFile: a sequence of records, each a uvarint length followed by that
// many bytes of AppendMutation's encoding. Nothing else, so files can be
// concatenated, and loading one merges it by timestamp.
const maxRecord = 1 << 30

// WriteTo writes every key's newest write to w in the data file format.
// It holds a read lock meanwhile: writes wait.
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	bw := bufio.NewWriter(w)
	var written int64
	var buf []byte
	for key, v := range s.values {
		buf = AppendMutation(buf[:0], Mutation{Timestamp: v.timestamp, Key: key, Value: v.value})
		var length [binary.MaxVarintLen64]byte
		n, _ := bw.Write(length[:binary.PutUvarint(length[:], uint64(len(buf)))])
		m, err := bw.Write(buf)
		written += int64(n + m)
		if err != nil {
			return written, err
		}
	}
	return written, bw.Flush()
}

// ReadFrom loads a data file, applying each record as a write (so the
// newest timestamp of each key wins), until EOF.
func (s *Store) ReadFrom(r io.Reader) (int64, error) {
	n, _, err := s.Load(r, nil)
	return n, err
}

// Load is ReadFrom for the keys keep accepts (nil: all). It also returns
// how many records it applied: those newer than what the store held.
func (s *Store) Load(r io.Reader, keep func(key string) bool) (read int64, applied int, err error) {
	br := bufio.NewReader(r)
	counter := &countingReader{r: br}
	var buf []byte
	for {
		length, err := binary.ReadUvarint(counter)
		if err == io.EOF {
			return counter.n, applied, nil
		}
		if err != nil {
			return counter.n, applied, fmt.Errorf("%w: record length: %w", ErrMalformed, err)
		}
		if length > maxRecord {
			return counter.n, applied, fmt.Errorf("%w: record of %d bytes", ErrMalformed, length)
		}
		if uint64(cap(buf)) < length {
			buf = make([]byte, length)
		}
		buf = buf[:length]
		if _, err := io.ReadFull(counter, buf); err != nil {
			return counter.n, applied, fmt.Errorf("%w: truncated record: %w", ErrMalformed, err)
		}
		m, err := DecodeMutation(buf)
		if err != nil {
			return counter.n, applied, err
		}
		if (keep == nil || keep(m.Key)) && s.Apply(m) { // Apply copies the value out of buf
			applied++
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}
