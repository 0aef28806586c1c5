package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseLinkWorkload(t *testing.T) {
	tests := []struct {
		spec string
		want linkWorkload
		err  bool
	}{
		{spec: "rr16", want: linkWorkload{spec: "rr16", kind: "rr", inFlight: 16, payload: 128}},
		{spec: "ow1.5x", want: linkWorkload{spec: "ow1.5x", kind: "oneway", rate: 15_000, payload: 128}},
		{spec: "ow500@1024", want: linkWorkload{spec: "ow500@1024", kind: "oneway", rate: 500, payload: 1024}},
		{spec: "rr0", err: true},
		{spec: "ow", err: true},
		{spec: "owx", err: true},
		{spec: "rr4@-1", err: true},
		{spec: "burst", err: true},
	}
	for _, tt := range tests {
		got, err := parseLinkWorkload(tt.spec, 10_000, 128)
		if tt.err {
			assert.Error(t, err, tt.spec)
			continue
		}
		require.NoError(t, err, tt.spec)
		assert.Equal(t, tt.want, got)
	}
}

// TestLinkCommand runs one short cell per topology through real network
// namespaces (root only) and checks that they are gone afterwards.
func TestLinkCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the link command needs root (network namespaces, tc)")
	}
	for _, tool := range []string{"ip", "tc", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the link command needs %s (apt-get install iproute2 ethtool)", tool)
		}
	}
	before := linkNamespaces(t)
	var out, errOut bytes.Buffer
	err := run([]string{linkCommand, "-workloads", "rr4,ow2000", "-systems", "adaptive,raw-nodelay",
		"-repeat", "1", "-duration", "300ms", "-warmup", "100ms"}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	for _, want := range []string{"topology router", "topology veth", "rr4 (payload 128 B)", "ow2000 (payload 128 B)", "raw-nodelay"} {
		assert.Contains(t, out.String(), want)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) > 2 && (f[0] == "adaptive" || f[0] == "raw-nodelay") {
			assert.NotEqual(t, "0", f[1], "no messages: %s", line)
		}
	}
	for name := range linkNamespaces(t) {
		assert.True(t, before[name], "namespace %s left behind", name)
	}
}

// linkNamespaces returns the link command's namespaces that exist now.
func linkNamespaces(t *testing.T) map[string]bool {
	list, err := exec.Command("ip", "netns", "list").Output()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, line := range strings.Split(string(list), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "lnk-") {
			names[f[0]] = true
		}
	}
	return names
}
