package memberlist

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	ml "github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/wire"
)

func TestConfigValidate(t *testing.T) {
	valid := Config{NodeID: "n1", TransportAddr: "127.0.0.1:7000"}
	tests := []struct {
		name    string
		change  func(c *Config)
		wantErr bool
	}{
		{"minimal", func(c *Config) {}, false},
		{"everything", func(c *Config) {
			c.BindAddr = "127.0.0.1:0"
			c.Seeds = []string{"127.0.0.1:7946"}
			c.ReconnectInterval = time.Second
			c.ReconnectTimeout = time.Hour
		}, false},
		{"all interfaces", func(c *Config) { c.BindAddr = ":7946" }, false},
		{"IPv6 bind", func(c *Config) { c.BindAddr = "[::1]:0" }, false},
		{"all IPv4 interfaces", func(c *Config) { c.BindAddr = "0.0.0.0:7946" }, false},
		{"BindAddr [::] would advertise ::", func(c *Config) { c.BindAddr = "[::]:7946" }, true},
		{"BindAddr [::] with Tune", func(c *Config) {
			c.BindAddr = "[::]:7946"
			c.Tune = func(mc *ml.Config) { mc.AdvertiseAddr = "2001:db8::1" }
		}, false},
		{"no NodeID", func(c *Config) { c.NodeID = "" }, true},
		{"longest NodeID a handshake carries", func(c *Config) {
			c.NodeID = cluster.NodeID(strings.Repeat("n", wire.MaxNameLength))
		}, false},
		{"NodeID longer than a handshake carries", func(c *Config) {
			c.NodeID = cluster.NodeID(strings.Repeat("n", wire.MaxNameLength+1))
		}, true},
		{"no TransportAddr", func(c *Config) { c.TransportAddr = "" }, true},
		{"TransportAddr without port", func(c *Config) { c.TransportAddr = "127.0.0.1" }, true},
		{"TransportAddr port 0", func(c *Config) { c.TransportAddr = "127.0.0.1:0" }, true},
		{"BindAddr without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, true},
		{"BindAddr host name", func(c *Config) { c.BindAddr = "localhost:0" }, true},
		{"BindAddr port too large", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, true},
		{"empty seed", func(c *Config) { c.Seeds = []string{"127.0.0.1:7946", ""} }, true},
		{"reconnection disabled", func(c *Config) { c.ReconnectInterval = -1 }, false},
		{"shortest reconnect interval", func(c *Config) { c.ReconnectInterval = 10 * time.Millisecond }, false},
		{"reconnect interval in nanoseconds by mistake", func(c *Config) { c.ReconnectInterval = 5 }, true},
		{"negative reconnect timeout", func(c *Config) { c.ReconnectTimeout = -time.Second }, true},
		{"reconnect timeout equal to the interval", func(c *Config) {
			c.ReconnectInterval, c.ReconnectTimeout = time.Second, time.Second
		}, false},
		{"reconnect timeout shorter than the interval", func(c *Config) {
			c.ReconnectInterval, c.ReconnectTimeout = time.Second, time.Second-1
		}, true},
		{"reconnect timeout shorter than the default interval", func(c *Config) { c.ReconnectTimeout = time.Second }, true},
		{"short reconnect timeout while disabled", func(c *Config) {
			c.ReconnectInterval, c.ReconnectTimeout = -1, time.Second
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.change(&c)
			err := c.Validate()
			if tt.wantErr {
				assert.ErrorIs(t, err, ErrInvalidConfig)
			} else {
				assert.NoError(t, err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	assert.Equal(t, Config{
		BindAddr:          DefaultBindAddr,
		ReconnectInterval: 5 * time.Second,
		ReconnectTimeout:  24 * time.Hour,
	}, DefaultConfig())

	seeds := []string{"127.0.0.1:1"}
	c := Config{Seeds: seeds}
	filled := c.withDefaults()
	assert.Equal(t, DefaultBindAddr, filled.BindAddr)
	assert.Equal(t, DefaultReconnectInterval, filled.ReconnectInterval)
	assert.Equal(t, DefaultReconnectTimeout, filled.ReconnectTimeout)
	assert.Empty(t, c.BindAddr, "the caller's config is not modified")
	assert.Equal(t, time.Duration(-1), Config{ReconnectInterval: -1}.withDefaults().ReconnectInterval,
		"negative disables and stays negative")
	filled.Seeds[0] = "changed"
	assert.Equal(t, "127.0.0.1:1", seeds[0], "seeds are copied")
}

func TestJoinInvalidConfig(t *testing.T) {
	m, err := Join(Config{NodeID: "n1"})
	assert.Nil(t, m)
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorIs(t, err, ErrInvalidAddr)
}

func TestBroadcastTimeoutIsNetError(t *testing.T) {
	var netErr net.Error
	require.True(t, errors.As(ErrBroadcastTimeout, &netErr))
	assert.True(t, netErr.Timeout())
}
