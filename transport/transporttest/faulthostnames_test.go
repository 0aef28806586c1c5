package transporttest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFaultsRefuseHostsTheNetworkDoesNotHave: a fault named with a host
// that no Host call gave (a typo: "n4" in a three-node cluster, "n 2"), or
// with one host twice, panics with the names, where it did nothing at all:
// the test that called it went on without its partition and could pass
// for the wrong reason.
func TestFaultsRefuseHostsTheNetworkDoesNotHave(t *testing.T) {
	n := NewNetwork()
	defer n.Close()
	client, server := connPair(t, n, "n1", "n2")
	n.Host("n3")

	for _, tc := range []struct {
		name  string
		fault func()
		want  string
	}{
		{"Partition, unknown host", func() { n.Partition("n1", "n4") }, `no host "n4"`},
		{"Partition, unknown first host", func() { n.Partition("n 2", "n1") }, `no host "n 2"`},
		{"Partition, one host twice", func() { n.Partition("n1", "n1") }, `"n1" twice`},
		{"Heal, unknown host", func() { n.Heal("n1", "n4") }, `no host "n4"`},
		{"Delay, unknown host", func() { n.Delay("n4", "n2", time.Second) }, `no host "n4"`},
		{"Delay, one host twice", func() { n.Delay("n2", "n2", time.Second) }, `"n2" twice`},
		{"Cut, unknown host", func() { n.Cut("n1", "n4") }, `no host "n4"`},
		{"Conns, unknown host", func() { n.Conns("n1", "n4") }, `no host "n4"`},
		{"Blackhole, unknown host", func() { n.Blackhole("n4") }, `no host "n4"`},
		{"Unblackhole, unknown host", func() { n.Unblackhole("n4") }, `no host "n4"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got any
			func() {
				defer func() { got = recover() }()
				tc.fault()
			}()
			require.NotNil(t, got, "the fault was accepted")
			msg, _ := got.(string)
			assert.Contains(t, msg, tc.want)
			assert.Contains(t, msg, "n1, n2, n3", "the message lists the network's hosts")
		})
	}

	// Nothing was changed by the refused faults: bytes still cross.
	_, err := client.Write([]byte("still connected"))
	require.NoError(t, err)
	got, err := readWithin(server, 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, "still connected", got)
	assert.Equal(t, 1, n.Conns("n1", "n2"))
}
