package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var smokeOptions = Options{
	Warmup:   50 * time.Millisecond,
	Duration: 200 * time.Millisecond,
	Drain:    10 * time.Second,
	Payload:  128,
	Rate:     2000,
	Repeat:   1,
}

// TestSmoke runs every scenario against every system briefly: each must
// deliver something and lose nothing.
func TestSmoke(t *testing.T) {
	for _, sc := range scenarioRegistry {
		for _, sys := range systemRegistry {
			t.Run(sc.Name+"/"+sys.Name, func(t *testing.T) {
				res, err := execute(sc, sys, smokeOptions)
				require.NoError(t, err)
				assert.True(t, res.Drained, "drain timed out: %+v", res)
				assert.Zero(t, res.Lost, "lost messages: %+v", res)
				assert.Zero(t, res.Failed, "failed messages: %+v", res)
				assert.Positive(t, res.Delivered)
				if sc.Name != "large" { // a slow system may finish no 16 MiB message within 200 ms
					assert.Positive(t, res.MsgsPerSec)
					assert.Positive(t, res.MBPerSec)
				}
				assert.Equal(t, sc.PayloadSize(smokeOptions), res.PayloadBytes)
				if _, counts := sys.New().(WriteCounter); res.MsgsPerSec > 0 {
					assert.Equal(t, counts, res.WritesPerMsg != nil)
				}
				if sc.Name == "reqresp" || sc.Name == "latency" {
					require.NotNil(t, res.P50us)
					assert.Positive(t, *res.P50us)
					assert.LessOrEqual(t, *res.P50us, *res.P99us)
					assert.LessOrEqual(t, *res.P99us, *res.P999us)
				} else {
					assert.Nil(t, res.P50us)
				}
			})
		}
	}
}

// TestCommandLine runs the tool as a user would, with -json and -chart.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	for _, chart := range []string{"out.svg", "out.png"} {
		var stdout, stderr bytes.Buffer
		err := run([]string{"-scenario", "small,latency", "-systems", "raw-tcp-batched,grpc-unary",
			"-duration", "100ms", "-warmup", "20ms", "-repeat", "2", "-json", "-chart", filepath.Join(dir, chart)}, &stdout, &stderr)
		require.NoError(t, err, stderr.String())

		var lines []map[string]any
		sc := bufio.NewScanner(&stdout)
		for sc.Scan() {
			var m map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
			lines = append(lines, m)
		}
		require.Len(t, lines, 4) // 2 scenarios × 2 systems
		for _, m := range lines {
			for _, key := range []string{"scenario", "system", "payload_bytes", "msgs_per_sec", "mb_per_sec",
				"p50_us", "p99_us", "p999_us", "cpu_us_per_msg", "writes_per_msg", "lost", "repeats"} {
				assert.Contains(t, m, key)
			}
			assert.Nil(t, m["writes_per_msg"], "baselines have no write counters")
			assert.EqualValues(t, 0, m["lost"])
			assert.EqualValues(t, 2, m["repeats"])
		}
		info, err := os.Stat(filepath.Join(dir, chart))
		require.NoError(t, err)
		assert.Positive(t, info.Size())
	}
}

func TestTable(t *testing.T) {
	p50 := func(v float64) *float64 { return &v }
	results := []Result{
		{Scenario: "small", System: "internode", MsgsPerSec: 1000, Drained: true},
		{Scenario: "small", System: "grpc-stream", MsgsPerSec: 50, Drained: true},
		{Scenario: "latency", System: "internode", P50us: p50(40), Drained: true},
		{Scenario: "latency", System: "raw-tcp-naive", P50us: p50(20), Drained: true},
	}
	var out bytes.Buffer
	require.NoError(t, writeTable(&out, []*Scenario{scenarioSmall, scenarioLatency}, results))
	text := out.String()
	assert.Regexp(t, `small +msgs/s +internode / grpc-stream +20\.000× +≥ 10× +pass`, text)
	assert.Regexp(t, `small +msgs/s +internode / raw-tcp-batched +- +≥ 0\.3× +n/a`, text)
	assert.Regexp(t, `latency +p50 µs +internode / raw-tcp-naive +2\.000× +≤ 1\.3× +SHORT`, text)
}

func TestMedian(t *testing.T) {
	v := func(f float64) *float64 { return &f }
	runs := []Result{
		{MsgsPerSec: 3, P50us: v(30), Lost: 1, Sent: 10, Drained: true},
		{MsgsPerSec: 1, P50us: v(10), Sent: 10, Drained: true},
		{MsgsPerSec: 2, P50us: v(20), Sent: 10, Drained: false},
	}
	m := median(runs)
	assert.Equal(t, 2.0, m.MsgsPerSec)
	assert.Equal(t, 20.0, *m.P50us)
	assert.Nil(t, m.WritesPerMsg)
	assert.EqualValues(t, 1, m.Lost, "losses add up over repeats")
	assert.EqualValues(t, 30, m.Sent)
	assert.False(t, m.Drained)
	assert.Equal(t, 3, m.Repeats)
}

func TestSelect(t *testing.T) {
	all, err := selectScenarios("all")
	require.NoError(t, err)
	assert.Len(t, all, len(scenarioRegistry))
	defaults, err := selectSystems("all")
	require.NoError(t, err)
	for _, e := range defaults {
		assert.False(t, e.OptIn, e.Name)
	}
	assert.Len(t, defaults, 5)
	_, err = selectScenarios("nope")
	assert.Error(t, err)
	sys, err := selectSystems("grpc-unary,internode")
	require.NoError(t, err)
	require.Len(t, sys, 2)
	assert.Equal(t, "internode", sys[0].Name, "registry order")
	_, err = selectSystems("internode,nope")
	assert.True(t, err != nil && strings.Contains(err.Error(), "nope"))
}
