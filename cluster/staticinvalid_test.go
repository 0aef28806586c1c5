package cluster

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/internode/internode/wire"
)

// A member list read from configuration may name a node with no ID, or
// name one node at two addresses: CheckMembers says which entry is wrong,
// rather than a transport later dialling a node it cannot name or the last
// of two addresses winning unseen.
func TestCheckMembersNamesTheBadEntry(t *testing.T) {
	require.NoError(t, CheckMembers(nil))
	require.NoError(t, CheckMembers([]Member{n1, n2, n1}), "the same member twice says nothing new")

	err := CheckMembers([]Member{n1, {Addr: "127.0.0.1:7009"}})
	require.ErrorIs(t, err, ErrInvalidMember)
	require.EqualError(t, err, `cluster: invalid member: entry 1 (at "127.0.0.1:7009") has an empty ID`)

	err = CheckMembers([]Member{n1, n2, {ID: "n1", Addr: "127.0.0.1:9"}})
	require.ErrorIs(t, err, ErrInvalidMember)
	require.EqualError(t, err, `cluster: invalid member: entry 2: "n1" is at "127.0.0.1:9" and, in entry 0, at "127.0.0.1:7001"`)
}

// NewStatic is for members written in the code, like regexp.MustCompile:
// it panics with CheckMembers' error.
func TestNewStaticPanicsOnInvalidMembers(t *testing.T) {
	require.PanicsWithError(t, `cluster: invalid member: entry 0 (at "") has an empty ID`, func() { NewStatic(Member{}) })
	require.Panics(t, func() { NewStatic(n1, Member{ID: "n1", Addr: "127.0.0.1:9"}) })
}

// Add refuses a member with no ID: no node is named "", and the transport
// would queue messages for it that it can never deliver.
func TestStaticAddRefusesEmptyID(t *testing.T) {
	s := NewStatic(n1)
	var rec recorder
	stop := s.Watch(rec.record)
	defer stop()

	err := s.Add(Member{Addr: "127.0.0.1:7009"})
	require.ErrorIs(t, err, ErrInvalidMember)
	require.EqualError(t, err, `cluster: invalid member: Add of a member (at "127.0.0.1:7009") with an empty ID`)
	require.Empty(t, rec.get())
	require.Equal(t, []Member{n1}, s.Members())
	require.NoError(t, s.Add(n2))
}

// No node has an ID longer than a handshake carries (wire.MaxNameLength):
// a transport refuses one as its own NodeID. Such a member is refused
// like one with no ID.
func TestStaticRefusesAnIDLongerThanAHandshakeCarries(t *testing.T) {
	long := Member{ID: NodeID(strings.Repeat("x", wire.MaxNameLength+1)), Addr: "127.0.0.1:7009"}
	require.NoError(t, CheckMembers([]Member{{ID: NodeID(strings.Repeat("x", wire.MaxNameLength))}}))

	err := CheckMembers([]Member{n1, long})
	require.ErrorIs(t, err, ErrInvalidMember)
	require.EqualError(t, err, `cluster: invalid member: entry 1 (at "127.0.0.1:7009") has an ID of 256 bytes, limit 255`)

	s := NewStatic(n1)
	err = s.Add(long)
	require.ErrorIs(t, err, ErrInvalidMember)
	require.EqualError(t, err, `cluster: invalid member: Add of a member (at "127.0.0.1:7009") with an ID of 256 bytes, limit 255`)
	require.Equal(t, []Member{n1}, s.Members())
}
