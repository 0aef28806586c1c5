package memberlist

import (
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		}, false},
		{"all interfaces", func(c *Config) { c.BindAddr = ":7946" }, false},
		{"IPv6 bind", func(c *Config) { c.BindAddr = "[::1]:0" }, false},
		{"no NodeID", func(c *Config) { c.NodeID = "" }, true},
		{"no TransportAddr", func(c *Config) { c.TransportAddr = "" }, true},
		{"TransportAddr without port", func(c *Config) { c.TransportAddr = "127.0.0.1" }, true},
		{"TransportAddr port 0", func(c *Config) { c.TransportAddr = "127.0.0.1:0" }, true},
		{"BindAddr without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, true},
		{"BindAddr host name", func(c *Config) { c.BindAddr = "localhost:0" }, true},
		{"BindAddr port too large", func(c *Config) { c.BindAddr = "127.0.0.1:70000" }, true},
		{"empty seed", func(c *Config) { c.Seeds = []string{"127.0.0.1:7946", ""} }, true},
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
	assert.Equal(t, Config{BindAddr: DefaultBindAddr}, DefaultConfig())

	seeds := []string{"127.0.0.1:1"}
	c := Config{Seeds: seeds}
	filled := c.withDefaults()
	assert.Equal(t, DefaultBindAddr, filled.BindAddr)
	assert.Empty(t, c.BindAddr, "the caller's config is not modified")
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
