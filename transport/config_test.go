package transport_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/routing"
	"github.com/internode/internode/transport"
)

// validConfig is the smallest config that passes Validate.
func validConfig() transport.Config {
	cfg := transport.DefaultConfig()
	cfg.NodeID, cfg.ClusterName, cfg.ListenAddr = "n1", "test", "127.0.0.1:0"
	cfg.Membership = cluster.NewStatic()
	return cfg
}

// TestConfigValidate has a row per check Validate makes: each breaks one
// rule and must be reported, by a message naming the field.
func TestConfigValidate(t *testing.T) {
	require.NoError(t, validConfig().Validate())
	ca := newCA(t, "test")
	creds, err := transport.NewCredentials(issue(t, ca, "n1", time.Hour, time.Hour), ca.Pool())
	require.NoError(t, err)
	withTLS := validConfig()
	withTLS.Security.TLS = &transport.TLSConfig{Credentials: creds, ReloadInterval: time.Millisecond}
	require.NoError(t, withTLS.Validate())
	tests := []struct {
		name   string
		change func(*transport.Config)
		want   string
	}{
		{"no node ID", func(c *transport.Config) { c.NodeID = "" }, "NodeID is required"},
		{"node ID too long", func(c *transport.Config) { c.NodeID = cluster.NodeID(strings.Repeat("n", 256)) }, "NodeID longer"},
		{"no cluster name", func(c *transport.Config) { c.ClusterName = "" }, "ClusterName is required"},
		{"cluster name too long", func(c *transport.Config) { c.ClusterName = strings.Repeat("c", 256) }, "ClusterName longer"},
		{"no listen address", func(c *transport.Config) { c.ListenAddr = "" }, "ListenAddr is required"},
		{"no membership", func(c *transport.Config) { c.Membership = nil }, "Membership is required"},
		{"threshold too small", func(c *transport.Config) { c.Lanes.LargeThreshold = 100 }, "Lanes.LargeThreshold"},
		{"threshold above a frame", func(c *transport.Config) { c.Lanes.LargeThreshold = transport.MaxLargeThreshold + 1 }, "Lanes.LargeThreshold"},
		{"override to no lane", func(c *transport.Config) { c.Lanes.Overrides = map[transport.Verb]routing.Lane{1: 9} }, "Lanes.Overrides[1]"},
		{"message size too small", func(c *transport.Config) { c.Memory.MaxMessageSize = 100 }, "Memory.MaxMessageSize"},
		{"message size above 1 GiB", func(c *transport.Config) { c.Memory.MaxMessageSize = 1<<30 + 1 }, "Memory.MaxMessageSize"},
		{"negative limit", func(c *transport.Config) { c.Memory.Outbound.Node = -1 }, "outbound limits must be positive"},
		{"outbound limits below a message", func(c *transport.Config) { c.Memory.Outbound.PerPeer = 1 << 20 }, "outbound limits"},
		{"inbound limits below a message", func(c *transport.Config) { c.Memory.Inbound.Node = 1 << 20 }, "inbound limits"},
		{"unknown overload policy", func(c *transport.Config) { c.Memory.InboundOverload = 7 }, "Memory.InboundOverload"},
		{"negative request timeout", func(c *transport.Config) { c.Timeouts.Request = -1 }, "Timeouts.Request"},
		{"negative dial timeout", func(c *transport.Config) { c.Timeouts.Dial = -1 }, "Timeouts.Dial"},
		{"negative handshake timeout", func(c *transport.Config) { c.Timeouts.Handshake = -1 }, "Timeouts.Handshake"},
		{"keepalive timeout shorter than two beats", func(c *transport.Config) { c.Timeouts.Keepalive = time.Second }, "Timeouts.Keepalive"},
		{"non-positive verb timeout", func(c *transport.Config) { c.Timeouts.PerVerb = map[transport.Verb]time.Duration{4: -1} }, "Timeouts.PerVerb[4]"},
		{"backoff bounds swapped", func(c *transport.Config) {
			c.Reconnect.MinBackoff, c.Reconnect.MaxBackoff = time.Second, time.Millisecond
		}, "Reconnect.MinBackoff"},
		{"no pending handshakes", func(c *transport.Config) { c.Security.MaxPendingHandshakes = -1 }, "Security.MaxPendingHandshakes"},
		{"fewer connections than per peer", func(c *transport.Config) { c.Security.MaxConns = 2; c.Security.MaxConnsPerPeer = 3 }, "Security.MaxConnsPerPeer"},
		{"TLS that trusts nothing", func(c *transport.Config) {
			c.Security.TLS = &transport.TLSConfig{Client: &tls.Config{InsecureSkipVerify: true}}
		}, "Security.TLS has no trusted roots"},
		{"TLS with a cluster name no certificate can hold", func(c *transport.Config) {
			c.ClusterName = "orders prod"
			c.Security.TLS = &transport.TLSConfig{Credentials: &transport.Credentials{}}
		}, "ClusterName is a certificate's URI host"},
		// A reload interval of a microsecond spins a core re-reading the
		// credential files, under the lock Reload takes.
		{"TLS reloading more often than every millisecond", func(c *transport.Config) {
			c.Security.TLS = &transport.TLSConfig{Credentials: creds, ReloadInterval: time.Microsecond}
		}, "Security.TLS.ReloadInterval"},
		{"stream window above the session's", func(c *transport.Config) { c.Streams.StreamBuffer = c.Streams.SessionBuffer * 2 }, "Streams"},
		// One stream that stops reading would fill the session's buffer,
		// and with it full smux reads nothing more: not even the window
		// update that stream's own handler may wait for.
		{"stream window as large as the session's", func(c *transport.Config) { c.Streams.StreamBuffer = c.Streams.SessionBuffer }, "Streams"},
		{"session within smux's first window", func(c *transport.Config) {
			c.Streams.SessionBuffer, c.Streams.StreamBuffer = 256<<10, 64<<10
		}, "Streams"},
		{"negative file rate", func(c *transport.Config) { c.Files.RateLimit = -1 }, "Files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			_, err = transport.New(cfg)
			assert.Error(t, err, "New validates too")
		})
	}
}

// TestConfigDefaultsAreFilledInACopy: New fills defaults without touching
// the caller's struct, and a zero group takes its defaults.
func TestConfigDefaultsAreFilledInACopy(t *testing.T) {
	cfg := transport.Config{NodeID: "n1", ClusterName: "test", ListenAddr: "127.0.0.1:0", Membership: cluster.NewStatic()}
	require.NoError(t, cfg.Validate())
	tr, err := transport.New(cfg)
	require.NoError(t, err)
	defer tr.Close()
	assert.Zero(t, cfg.Memory, "the caller's struct is not modified")
	assert.Nil(t, cfg.Lanes.Coalescing)
}
