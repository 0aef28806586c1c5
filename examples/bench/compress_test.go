package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCompressPayloads: the JSON-like payloads are 1 KiB, differ, and
// compress as text does; the random ones do not.
func TestCompressPayloads(t *testing.T) {
	for _, random := range []bool{false, true} {
		set := compressPayloadSet(random)
		require.Len(t, set, compressPayloads)
		batch := bytes.Join(set[:200], nil)
		for _, p := range set {
			require.Len(t, p, 1<<10)
		}
		assert.NotEqual(t, set[0], set[1])
		ratio := float64(len(s2.Encode(nil, batch))) / float64(len(batch))
		if random {
			assert.Greater(t, ratio, 0.99)
		} else {
			assert.True(t, json.Valid(set[0]) || strings.HasPrefix(string(set[0]), `{"id":"`), "JSON-like: %s", set[0])
			assert.Less(t, ratio, 0.5, "JSON-like text shrinks")
		}
	}
}

// TestCompressScenario runs the compress scenario briefly, as root: each
// system delivers over the shaped link and loses nothing, and the
// namespaces are gone afterwards. Without root it checks the scenario is
// skipped with a message.
func TestCompressScenario(t *testing.T) {
	var stdout bytes.Buffer
	var stderr syncBuffer
	err := run([]string{"-scenario", "compress", "-duration", "500ms", "-warmup", "200ms", "-repeat", "1", "-json"}, &stdout, &stderr)
	if why := linkUnavailable(); why != nil {
		assert.Contains(t, stderr.String(), "compress: skipped: "+why.Error())
		t.Skip(why)
	}
	require.NoError(t, err, stderr.String())
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		got[m["system"].(string)] = m
	}
	require.Len(t, got, 4, stdout.String())
	for name, m := range got {
		assert.NotContains(t, m, "error", name)
		assert.Positive(t, m["msgs_per_sec"], name)
		assert.Positive(t, m["cpu_us_per_msg"], name)
		assert.EqualValues(t, 0, m["lost"], name)
		assert.Equal(t, true, m["drained"], name)
	}
	assert.Less(t, got["json-auto"]["compression_ratio"], 0.5, "JSON-like frames compressed")
	assert.EqualValues(t, 1, got["json-off"]["compression_ratio"])
	assert.EqualValues(t, 1, got["random-auto"]["compression_ratio"], "random frames sent as they were")
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	require.NoError(t, err)
	assert.NotContains(t, string(out), "inode-cmp-", "namespaces deleted")
}
