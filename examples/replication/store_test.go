package replication_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/examples/replication"
)

func TestMutationRoundTrip(t *testing.T) {
	for _, m := range []replication.Mutation{
		{Timestamp: 1, Key: "k", Value: []byte("v")},
		{Timestamp: 1 << 62, Key: "", Value: nil},
		{Timestamp: 42, Key: "users/17", Value: bytes.Repeat([]byte{7}, 100<<10)},
	} {
		got, err := replication.DecodeMutation(replication.AppendMutation(nil, m))
		require.NoError(t, err)
		require.Equal(t, m.Timestamp, got.Timestamp)
		require.Equal(t, m.Key, got.Key)
		require.Equal(t, len(m.Value), len(got.Value))
		require.True(t, bytes.Equal(m.Value, got.Value))
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"wrong version": {2, 1, 0},
		"no timestamp":  {1},
		"key overruns":  {1, 1, 5, 'a'},
	} {
		_, err := replication.DecodeMutation(b)
		require.ErrorIs(t, err, replication.ErrMalformed, name)
	}
}

func TestStoreNewestWins(t *testing.T) {
	s := replication.NewStore()
	value := []byte("v2")
	require.True(t, s.Apply(replication.Mutation{Timestamp: 2, Key: "k", Value: value}))
	value[0] = 'X' // Apply copied it
	require.False(t, s.Apply(replication.Mutation{Timestamp: 1, Key: "k", Value: []byte("v1")}), "older")
	require.False(t, s.Apply(replication.Mutation{Timestamp: 2, Key: "k", Value: []byte("v1")}), "same timestamp, smaller value")
	require.False(t, s.Apply(replication.Mutation{Timestamp: 2, Key: "k", Value: []byte("v2")}), "the same write again")
	got, ts, ok := s.Get("k")
	require.True(t, ok)
	require.Equal(t, "v2", string(got))
	require.Equal(t, uint64(2), ts)
	require.True(t, s.Apply(replication.Mutation{Timestamp: 3, Key: "k", Value: []byte("v333")}))
	require.Equal(t, 1, s.Len())
	require.Equal(t, int64(4), s.Bytes())
}

// The data file Bootstrap copies with SendFile: loading two
// peers' overlapping copies converges on the newest values.
func TestDataFileMerges(t *testing.T) {
	a, b := replication.NewStore(), replication.NewStore()
	for i := range 100 {
		key := fmt.Sprintf("k%03d", i)
		a.Apply(replication.Mutation{Timestamp: uint64(i), Key: key, Value: []byte("from a")})
		if i%2 == 0 {
			b.Apply(replication.Mutation{Timestamp: uint64(i + 1), Key: key, Value: bytes.Repeat([]byte("b"), i*1000)})
		}
	}
	var fileA, fileB bytes.Buffer
	n, err := a.WriteTo(&fileA)
	require.NoError(t, err)
	require.Equal(t, int64(fileA.Len()), n)
	_, err = b.WriteTo(&fileB)
	require.NoError(t, err)

	joined := replication.NewStore()
	for _, f := range []*bytes.Buffer{&fileB, &fileA} {
		size := int64(f.Len())
		n, err := joined.ReadFrom(f)
		require.NoError(t, err)
		require.Equal(t, size, n)
	}
	require.Equal(t, 100, joined.Len())
	for i := range 100 {
		v, ts, ok := joined.Get(fmt.Sprintf("k%03d", i))
		require.True(t, ok)
		if i%2 == 0 {
			require.Equal(t, uint64(i+1), ts)
			require.Len(t, v, i*1000)
		} else {
			require.Equal(t, "from a", string(v))
		}
	}

	var truncated bytes.Buffer
	_, err = a.WriteTo(&truncated)
	require.NoError(t, err)
	_, err = replication.NewStore().ReadFrom(bytes.NewReader(truncated.Bytes()[:truncated.Len()-1]))
	require.ErrorIs(t, err, replication.ErrMalformed)
}

// Two coordinators can stamp different writes of one key with the same
// timestamp (clocks of coarse resolution, or a Config.Now of one): the
// replicas must still converge whatever order the writes reach them in,
// as they do in Cassandra, where the larger value wins a tie.
func TestStoreConvergesOnTimestampTies(t *testing.T) {
	x := replication.Mutation{Timestamp: 7, Key: "k", Value: []byte("from n1")}
	y := replication.Mutation{Timestamp: 7, Key: "k", Value: []byte("from n2")}
	a, b := replication.NewStore(), replication.NewStore()
	a.Apply(x)
	a.Apply(y)
	b.Apply(y)
	b.Apply(x)
	va, _, _ := a.Get("k")
	vb, _, _ := b.Get("k")
	require.Equal(t, string(va), string(vb), "replicas that received the same writes hold different values")

	// A data file merges the same way: a bootstrap from two peers that
	// each hold one of the writes ends on the same value either way.
	var fileA, fileB bytes.Buffer
	_, err := a.WriteTo(&fileA)
	require.NoError(t, err)
	only := replication.NewStore()
	only.Apply(x)
	_, err = only.WriteTo(&fileB)
	require.NoError(t, err)
	joined := replication.NewStore()
	_, err = joined.ReadFrom(bytes.NewReader(fileB.Bytes()))
	require.NoError(t, err)
	_, err = joined.ReadFrom(bytes.NewReader(fileA.Bytes()))
	require.NoError(t, err)
	vj, _, _ := joined.Get("k")
	require.Equal(t, string(va), string(vj))
}
