package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		line  string
		width int
		want  string
	}{
		{"short line", 20, "short line"},
		{"one two three four", 9, "one two\n    three\n    four"},
		{"  12.0s * n5 bootstrap failed: dial tcp", 20, "  12.0s * n5\n      bootstrap\n      failed: dial\n      tcp"},
		{"a 0123456789abcdef b", 8, "a\n    0123456789abcdef\n    b"}, // a long word stays whole
		{"no wrapping at all", 0, "no wrapping at all"},
		{"  n1->n2 small    waiting   from 3.1 s", 30, "  n1->n2 small    waiting\n      from 3.1 s"}, // alignment kept
		{"a    b c", 3, "a\n    b\n    c"},
		{"summary: nodes=1 writes=0 writes_failed=0", 10, "summary: nodes=1 writes=0 writes_failed=0"},
	} {
		require.Equal(t, tc.want, wrap(tc.line, tc.width), "%q at %d", tc.line, tc.width)
		for _, l := range strings.Split(wrap(tc.line, tc.width), "\n") {
			if tc.width > 0 && len(l) > tc.width && !strings.HasPrefix(tc.line, "summary:") {
				require.NotContains(t, strings.TrimSpace(l), " ", "%q: only a single long word may exceed the width", l)
			}
		}
	}

	var out bytes.Buffer
	w := newWrapWriter(&out, 9)
	fmt.Fprintf(w, "one two three\nfour\n")
	fmt.Fprint(w, "tail")
	require.Equal(t, "one two\n    three\nfour\ntail", out.String())
}

// A real run with its faults prints no line over consoleWidth, progress
// and report alike; with -wide the progress lines are the wide form.
func TestConsoleFitsWidth(t *testing.T) {
	runText := func(args ...string) string {
		o, err := parseOptions(append([]string{"-nodes", "3", "-duration", "2500ms", "-rate", "50"}, args...), io.Discard)
		require.NoError(t, err)
		var stdout bytes.Buffer
		_, err = run(t.Context(), o, &stdout, io.Discard)
		require.NoError(t, err)
		return stdout.String()
	}

	narrow := runText()
	require.Contains(t, narrow, "   time | urgent  small  large | urgent  small  large |")
	require.Contains(t, narrow, "fault: n3 is stopped abruptly", "the run had its faults, and the report says so")
	require.Contains(t, narrow, "* n3 stopped abruptly", "events are printed")
	var rows int
	for _, line := range strings.Split(narrow, "\n") {
		require.LessOrEqual(t, len(line), consoleWidth, "line over %d columns:\n%s", consoleWidth, line)
		if strings.HasSuffix(line, "| 3/3") || strings.HasSuffix(line, "| 2/3") {
			rows++
		}
	}
	require.GreaterOrEqual(t, rows, 2, "progress rows a second:\n%s", narrow)

	wide := runText("-wide")
	require.Contains(t, wide, progressHeaderWide)
	require.Contains(t, wide, "faults: n2 has a slow disk")
	longest := 0
	for _, line := range strings.Split(wide, "\n") {
		longest = max(longest, len(line))
	}
	require.Greater(t, longest, consoleWidth, "-wide prints the long form")
}

// The narrow progress line fits consoleWidth at the widest values it can
// show: 64 nodes, 10 s latencies, millions of messages, a full node queue.
func TestProgressLineWidestValues(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, nil, time.Now(), 64)
	widest := sample{T: 9999.9, WritesPerSec: 6_400_000, WriteP99: 99_999, FailedPerSec: 9_999_999,
		PendingBytes: 999 << 30, Overloaded: 99_999_999, Throttled: 99_999_999, Stuck: 12_096, Up: 64}
	for lane := range widest.MsgsPerSec {
		widest.MsgsPerSec[lane], widest.P99[lane] = 9_999_999, 99_999
	}
	p.add(widest)
	p.upText, p.upLabel = func(int) string { return "64" }, "members" // node mode
	p.lines = 0
	p.add(widest)
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 6, "two headers of two lines, two rows")
	for _, line := range lines {
		require.LessOrEqual(t, len(line), consoleWidth, line)
	}
	require.True(t, strings.HasSuffix(lines[2], "| 64/64"), lines[2])
}

// An event is one line, even when it carries a joined error's lines.
func TestEventIsOneLine(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, nil, time.Now(), 3)
	p.event("n3", "bootstrap failed: %v", errors.Join(errors.New("from n1: reset"), errors.New("from n2: reset")))
	require.Regexp(t, `^ +\d+\.\ds \* n3 bootstrap failed: from n1: reset; from n2: reset\n$`, out.String())
	require.Equal(t, "bootstrap failed: from n1: reset; from n2: reset", p.allEvents()[0].What)
}
