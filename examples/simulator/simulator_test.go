package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/internode/internode/internal/freeport"
	"github.com/internode/internode/routing"
)

// The in-process cluster, shortened to 5 s with its faults on: nothing is
// lost, no pair lane is stuck, the JSON report parses, and the HTML report
// is self-contained.
func TestRunInProcess(t *testing.T) {
	htmlPath := filepath.Join(t.TempDir(), "report.html")
	o, err := parseOptions([]string{"-duration", "5s", "-rate", "100", "-json", "-report", htmlPath}, io.Discard)
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	_, err = run(t.Context(), o, &stdout, &stderr)
	require.NoError(t, err, stderr.String())

	var r report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &r), "stdout holds the JSON report only")
	require.Equal(t, 5, r.Summary.Nodes)
	require.Zero(t, r.Summary.Lost, r.SummaryLine)
	require.Zero(t, r.Summary.Stuck, "%s; stuck: %s", r.SummaryLine, r.Stuck.names())
	require.Regexp(t, ` lost=0 stuck=0$`, r.SummaryLine)
	// Pairs are judged once their nodes have been up for startGrace (3 s):
	// those of n1-n4 by the end, n5's not (it restarted at 1.7 s).
	require.NotNil(t, r.Stuck)
	require.GreaterOrEqual(t, r.Stuck.Watched, 4*3*3, "the pair lanes of n1-n4 were judged")
	require.Empty(t, r.Stuck.Pairs)
	// After the writes, the gossip and the probes moved every pair lane.
	require.Empty(t, r.Stuck.StillAtEnd)
	require.NotNil(t, r.Stuck.MovingAtEnd)
	require.Equal(t, 5*4*3, *r.Stuck.MovingAtEnd, "every pair lane moved after the writes stopped")
	require.Positive(t, r.Summary.Sent)
	require.Equal(t, r.Summary.Sent, r.Summary.Delivered+r.Summary.Failed)
	require.Contains(t, stderr.String(), r.SummaryLine+"\n", "the summary line ends the progress output")
	require.NotEmpty(t, r.Series, "a progress sample a second")

	var large uint64
	for _, n := range r.PerNode {
		require.Zero(t, n.Requests.Lost, n.ID)
		require.Zero(t, n.Gossip.Lost, n.ID)
		require.Positive(t, n.Gossip.Delivered, n.ID)
		large += n.Lanes[routing.Large].Written
	}
	require.Positive(t, large, "values above 64 KiB took the large lane")

	// The faults happened: n5 restarted, and the report says how it came back.
	require.Equal(t, 1, r.PerNode[4].Restarts)
	require.True(t, r.PerNode[1].Slow)
	require.NotNil(t, r.Recovery)
	require.Equal(t, "n5", r.Recovery.Node)
	require.NotNil(t, r.Recovery.Bootstrap, "n5 lost its data and bootstrapped")
	require.Empty(t, r.Recovery.Bootstrap.Error)
	require.Positive(t, r.Recovery.Bootstrap.FileBytes)

	page, err := os.ReadFile(htmlPath)
	require.NoError(t, err)
	html := string(page)
	require.Equal(t, 7, strings.Count(html, "<svg "), "seven charts")
	// The stated duration is the workload's; finishing and closing is
	// stated apart (it was once added to it: "-duration 12s ... for 15.9 s").
	require.GreaterOrEqual(t, r.WorkloadS, 5.0)
	require.Less(t, r.WorkloadS, 6.0, "the workload stops at -duration")
	require.Positive(t, r.DrainS)
	require.LessOrEqual(t, r.WorkloadS+r.DrainS, r.ElapsedS+1e-9)
	require.Contains(t, html, fmt.Sprintf("The workload ran for %.1f s (-duration 5.0 s)", r.WorkloadS))
	require.Contains(t, html, fmt.Sprintf("Then the nodes took %.1f s to finish", r.DrainS))
	require.Contains(t, html, r.SummaryLine)
	require.Contains(t, html, "<h2>Stuck pair lanes</h2>")
	for _, fetch := range []string{"<script", "src=", "href=", "url(", "@import", "<link"} {
		require.NotContains(t, html, fetch, "the page must fetch nothing")
	}
	require.Equal(t, strings.Count(html, "http"), strings.Count(html, `xmlns="http://www.w3.org/2000/svg"`),
		"the only URL is SVG's namespace, which is never fetched")
}

func TestTextReportEndsWithSummary(t *testing.T) {
	o, err := parseOptions([]string{"-nodes", "2", "-duration", "1500ms", "-rate", "50"}, io.Discard)
	require.NoError(t, err)
	var stdout bytes.Buffer
	r, err := run(t.Context(), o, &stdout, io.Discard)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Equal(t, r.SummaryLine, lines[len(lines)-1])
	require.Regexp(t, `^summary: nodes=2 writes=\d+ writes_failed=\d+ sent=\d+ delivered=\d+ failed=\d+ lost=0 stuck=0$`, lines[len(lines)-1])
	require.Equal(t, 1, strings.Count(stdout.String(), "summary:"), "exactly one summary line")
	require.Empty(t, r.Faults, "two nodes are too few for faults")
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"-nodes", "1"}, 2, "-nodes must be between 2 and 64"},
		{[]string{"-stuck-after", "500ms"}, 2, "-stuck-after must be at least 1s"},
		{[]string{"-strategy", "sometimes"}, 2, "unknown strategy"},
		{[]string{"-mode", "node"}, 2, "node mode needs -id and -listen"},
		{[]string{"-mode", "node", "-id", "n1", "-listen", "127.0.0.1:1", "-tls"}, 2, "needs -tls-dir"},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-h"}, 0, "Usage: simulator"},
	} {
		var stderr bytes.Buffer
		require.Equal(t, tc.status, realMain(tc.args, io.Discard, &stderr), "%v", tc.args)
		require.Contains(t, stderr.String(), tc.stderr, "%v", tc.args)
	}
}

// -metrics-addr serves every node's transport metrics while the run
// lasts, the Go runtime's once, and the host's kernel counters once.
func TestMetricsEndpoint(t *testing.T) {
	addr := freeAddr(t)
	o, err := parseOptions([]string{"-nodes", "3", "-duration", "2s", "-rate", "20", "-metrics-addr", addr}, io.Discard)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := run(t.Context(), o, io.Discard, io.Discard)
		done <- err
	}()
	var text string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		text = string(body)
		return strings.Contains(text, "internode_messages_sent") &&
			strings.Contains(text, `node="n1"`) && strings.Contains(text, `node="n3"`)
	}, 10*time.Second, 50*time.Millisecond)
	require.NoError(t, <-done)
	samples := func(name string) []string {
		var lines []string
		for line := range strings.Lines(text) {
			if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
				lines = append(lines, strings.TrimSpace(line))
			}
		}
		return lines
	}
	goroutines := samples("go_goroutine_count")
	require.Len(t, goroutines, 1, "the process's goroutines, once")
	require.NotContains(t, goroutines[0], "node=")
	require.NotEmpty(t, samples("go_memory_used_bytes"), "the heap")
	for _, name := range []string{"internode_kernel_softnet_time_squeeze_total", "internode_kernel_tcp_rcv_collapsed_total"} {
		kernel := samples(name)
		require.Len(t, kernel, 1, "%s once, not once per node", name)
		require.Contains(t, kernel[0], `node="n1"`)
	}
}

func TestValueSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	large := 0
	for range 100_000 {
		size := valueSize(r, 1024)
		require.Positive(t, size)
		require.False(t, size > routing.DefaultThreshold-4<<10 && size <= routing.DefaultThreshold+4<<10,
			"%d is too close to the lane threshold", size)
		if size > routing.DefaultThreshold {
			large++
		}
	}
	require.InDelta(t, 2000, large, 300, "about 2%% of values take the large lane")
	// A typical size near the threshold is moved out of its band too.
	for range 1000 {
		size := valueSize(r, 64<<10)
		require.False(t, size > routing.DefaultThreshold-4<<10 && size <= routing.DefaultThreshold+4<<10, "%d", size)
	}
}

// Three node processes on loopback, each joining the first through
// memberlist, each ending with its own summary and nothing lost.
func TestNodeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the simulator and runs three processes for several seconds")
	}
	binary := filepath.Join(t.TempDir(), "simulator")
	build := exec.Command("go", "build", "-o", binary, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	seed := freeGossipAddr(t)
	type result struct {
		id     string
		output string
		err    error
	}
	results := make(chan result, 3)
	var wg sync.WaitGroup
	start := func(id string, join string, extra ...string) (ready <-chan struct{}) {
		args := []string{"-mode", "node", "-id", id, "-listen", freeAddr(t), "-duration", "10s", "-rate", "50"}
		args = append(args, extra...)
		if join == "" {
			args = append(args, "-gossip", seed)
		} else {
			args = append(args, "-gossip", freeGossipAddr(t), "-join", join)
		}
		cmd := exec.CommandContext(ctx, binary, args...)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		started := make(chan struct{})
		wg.Go(func() {
			var all strings.Builder
			scanner := bufio.NewScanner(stdout)
			once := sync.OnceFunc(func() { close(started) })
			for scanner.Scan() {
				all.WriteString(scanner.Text() + "\n")
				if strings.HasPrefix(scanner.Text(), "node "+id+":") {
					once() // it has joined and listens
				}
			}
			once()
			err := cmd.Wait()
			results <- result{id: id, output: all.String() + stderr.String(), err: err}
		})
		return started
	}
	ops := freeAddr(t) // n1's metrics, health and readiness
	<-start("n1", "", "-metrics-addr", ops)
	start("n2", seed)
	start("n3", seed)
	// While the workload runs, n1 reaches both peers and is ready.
	type healthView struct {
		Up    int             `json:"up"`
		Ready map[string]bool `json:"ready"`
	}
	// Within about 0.15 s here, beside go test -race ./transport too; once
	// in CI not within 4 s, with nothing to say why: the bound is wider
	// now, still within the nodes' run, and a failure logs their output.
	getHealth := func() (healthView, error) {
		var h healthView
		resp, err := http.Get("http://" + ops + "/health")
		if err != nil {
			return h, err
		}
		defer resp.Body.Close()
		err = json.NewDecoder(resp.Body).Decode(&h)
		return h, err
	}
	waited := time.Now()
	if !assert.Eventually(t, func() bool {
		h, err := getHealth()
		return err == nil && h.Up == 2
	}, 8*time.Second, 10*time.Millisecond) {
		h, err := getHealth()
		cancel() // the nodes' output says why: a port taken meanwhile, say
		wg.Wait()
		close(results)
		for r := range results {
			t.Logf("%s (%v):\n%s", r.id, r.err, r.output)
		}
		t.Fatalf("n1 never reached both peers: /health says %+v (error %v)", h, err)
	}
	t.Logf("n1 reached both peers %v after it started", time.Since(waited).Round(time.Millisecond))
	health, err := getHealth()
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"all": true, "quorum": true}, health.Ready)
	resp, err := http.Get("http://" + ops + "/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	wg.Wait()
	close(results)

	summary := regexp.MustCompile(`(?m)^summary: nodes=1 writes=\d+ writes_failed=\d+ sent=(\d+) delivered=(\d+) failed=(\d+) lost=(-?\d+) stuck=(\d+)$`)
	for r := range results {
		require.NoError(t, r.err, "%s:\n%s", r.id, r.output)
		m := summary.FindStringSubmatch(r.output)
		require.NotNil(t, m, "%s printed no summary:\n%s", r.id, r.output)
		require.Equal(t, "0", m[4], "%s lost messages:\n%s", r.id, r.output)
		require.Equal(t, "0", m[5], "%s had stuck pair lanes:\n%s", r.id, r.output)
		sent, _ := strconv.Atoi(m[1])
		require.Positive(t, sent, "%s sent nothing:\n%s", r.id, r.output)
		require.Regexp(t, `(?m)\| 3$`, r.output, "%s never saw the three nodes:\n%s", r.id, r.output)
	}
}

// freeAddr returns a loopback TCP address free a moment ago.
func freeAddr(t *testing.T) string {
	return loopbackAddr(t, false)
}

// freeGossipAddr returns a loopback port free for both TCP and UDP, as
// memberlist needs.
func freeGossipAddr(t *testing.T) string {
	return loopbackAddr(t, true)
}

// loopbackAddr returns a free loopback address for a node process to
// listen on, below the ephemeral range: a port the kernel picks for
// 127.0.0.1:0 could be taken by another test's outgoing connection before
// the node binds it.
func loopbackAddr(t *testing.T, udp bool) string {
	ports, err := freeport.Loopback(1, udp)
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
}

// The HTML report opens in headless Chromium, when there is one, with no
// console error; measured there after layout, at a 1100 px window: each
// chart has one unit per axis (its data-y-unit, the unit of every series
// and of its one y label), nothing is wider than the page's 1000 px
// column, no failure reason breaks across lines, and the event labels of
// a chart do not overlap. A screenshot of the page is taken too; set
// INTERNODE_REPORT_SCREENSHOT to a file name to keep it.
func TestHTMLReportInChromium(t *testing.T) {
	var browser string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if path, err := exec.LookPath(name); err == nil {
			browser = path
			break
		}
	}
	if browser == "" {
		t.Skip("no Chromium on PATH (Debian: apt-get install chromium)")
	}
	dir := t.TempDir()
	htmlPath := filepath.Join(dir, "report.html")
	o, err := parseOptions([]string{"-duration", "3s", "-rate", "50", "-report", htmlPath}, io.Discard)
	require.NoError(t, err)
	r, err := run(t.Context(), o, io.Discard, io.Discard)
	require.NoError(t, err)

	const width = 1100
	// --disable-dev-shm-usage: Chromium crashes when /dev/shm is small, as
	// in many containers. Debian's launcher adds the flag only when its own
	// check of /dev/shm works, and that check fails where findmnt reports
	// more than one mount (a CI run printed its "[: ...: unexpected
	// operator" and then Chromium's segmentation fault).
	//
	// A browser that dies by a signal twice is a broken browser on this
	// machine, not a finding about the page: the test skips with its log.
	chrome := func(args ...string) (stdout string) {
		run := func() (string, string, error) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, browser, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
				"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
				"--enable-logging=stderr", "--v=0"}, args...)...)
			var out, logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &logs
			err := cmd.Run()
			return out.String(), logs.String(), err
		}
		out, logs, err := run()
		if crashed(err) {
			t.Logf("%s crashed (%v), trying once more; its log:\n%s", browser, err, logs)
			out, logs, err = run()
			if crashed(err) {
				t.Skipf("%s crashed twice on this machine (%v); its log:\n%s", browser, err, logs)
			}
		}
		require.NoError(t, err, logs)
		for _, line := range strings.Split(logs, "\n") {
			require.NotContains(t, line, ":CONSOLE", "console message: %s", line)
			require.NotContains(t, line, "Failed to load", line)
		}
		return out
	}

	// The page itself has no script: a copy of it gets the one that measures.
	page, err := os.ReadFile(htmlPath)
	require.NoError(t, err)
	measured := filepath.Join(dir, "measured.html")
	require.NoError(t, os.WriteFile(measured,
		[]byte(strings.Replace(string(page), "</body>", "<script>"+layoutCheck+"</script></body>", 1)), 0o644))
	dom := chrome(fmt.Sprintf("--window-size=%d,900", width), "--dump-dom", "file://"+measured)
	require.Equal(t, 7, strings.Count(dom, "<svg "), "the rendered page has the seven charts")
	require.Contains(t, dom, r.SummaryLine)
	m := regexp.MustCompile(`data-layout="([A-Za-z0-9+/=]+)"`).FindStringSubmatch(dom)
	require.NotNil(t, m, "the layout check ran")
	raw, err := base64.StdEncoding.DecodeString(m[1])
	require.NoError(t, err)
	var layout struct {
		ContentWidth, Viewport, ScrollWidth, Height float64
		Charts                                      []struct {
			Title, X, Y         string
			SeriesUnits, YLabel []string
			Series, Marks       int
		}
		Overflow, Split, Overlaps []string
	}
	require.NoError(t, json.Unmarshal(raw, &layout), string(raw))

	require.Equal(t, 1000.0, layout.ContentWidth, "the page's column")
	require.LessOrEqual(t, layout.ScrollWidth, layout.Viewport, "the page does not scroll sideways")
	require.Empty(t, layout.Overflow, "elements wider than the page's column, or text outside its chart")
	require.Empty(t, layout.Split, "failure reasons broken across lines")
	require.Empty(t, layout.Overlaps, "event labels overlapping")
	require.Len(t, layout.Charts, 7)
	marked := 0
	for _, e := range r.Events {
		if e.T <= chartEnd(r)+1e-6 {
			marked++
		}
	}
	require.GreaterOrEqual(t, marked, 3, "the faults happened during the workload, close together: %v", r.Events)
	units := map[string]bool{}
	for _, c := range layout.Charts {
		require.Equal(t, "s", c.X, c.Title)
		require.NotEmpty(t, c.Y, c.Title)
		require.Equal(t, []string{c.Y}, c.SeriesUnits, "%s: every series in the axis's unit", c.Title)
		require.Len(t, c.YLabel, 1, c.Title)
		require.True(t, strings.HasPrefix(c.YLabel[0], c.Y), "%s: the axis is labelled %q", c.Title, c.YLabel[0])
		require.Positive(t, c.Series, c.Title)
		require.Equal(t, marked, c.Marks, "%s: every event of the workload is marked", c.Title)
		units[c.Title] = true
	}
	byTitle := map[string]string{}
	for _, c := range layout.Charts {
		byTitle[c.Title] = c.Y
	}
	require.Equal(t, unitMsgsPerSec, byTitle["Failed messages"])
	require.Contains(t, []string{unitKiB, unitMiB}, byTitle["Queued outbound"])
	require.Equal(t, unitPausesPerS, byTitle["Reads paused"])
	require.Equal(t, unitPairLanes, byTitle["Stuck pair lanes"])

	// The screenshot: the whole page, at the width measured.
	shot := filepath.Join(dir, "report.png")
	chrome(fmt.Sprintf("--window-size=%d,%d", width, int(layout.Height)), "--screenshot="+shot, "file://"+htmlPath)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Equal(t, width, img.Bounds().Dx())
	colors := map[color.RGBA]bool{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 7 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 7 {
			colors[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
		}
	}
	require.Greater(t, len(colors), 20, "the screenshot shows a page, not a blank")
	if keep := os.Getenv("INTERNODE_REPORT_SCREENSHOT"); keep != "" {
		png, err := os.ReadFile(shot)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(keep, png, 0o644))
		t.Logf("screenshot: %s (%dx%d)", keep, img.Bounds().Dx(), img.Bounds().Dy())
	}
}

// A browser killed by a signal of its own counts as crashed; one that
// fails, or that the test's timeout kills, does not.
func TestCrashedTellsACrashFromAFailure(t *testing.T) {
	sh := func(ctx context.Context, script string) error {
		return exec.CommandContext(ctx, "sh", "-c", script).Run()
	}
	require.True(t, crashed(sh(t.Context(), "kill -SEGV $$")))
	require.True(t, crashed(sh(t.Context(), "kill -ABRT $$")))
	require.False(t, crashed(sh(t.Context(), "exit 1")))
	require.False(t, crashed(sh(t.Context(), "exit 0")))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.False(t, crashed(sh(ctx, "kill -STOP $$")), "not started: an error, not a crash")
	cmd := exec.Command("sh", "-c", "kill -STOP $$")
	require.NoError(t, cmd.Start())
	require.NoError(t, cmd.Process.Kill())
	require.False(t, crashed(cmd.Wait()), "killed as a timeout kills it")
}

// crashed reports whether a browser run ended by a signal it did not get
// from the test: SIGKILL is the test's own timeout, which fails the test.
func crashed(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() != syscall.SIGKILL
}

// layoutCheck runs in the browser at the end of a copy of the report and
// leaves what it measured, as base64 JSON, in the body's data-layout.
const layoutCheck = `(function () {
  const out = {Charts: [], Overflow: [], Split: [], Overlaps: []};
  const body = document.body, style = getComputedStyle(body), box = body.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
  out.ContentWidth = right - left;
  out.Viewport = document.documentElement.clientWidth;
  out.ScrollWidth = document.documentElement.scrollWidth;
  const name = (el) => el.tagName.toLowerCase() + (el.getAttribute('class') ? '.' + el.getAttribute('class') : '');
  for (const el of body.querySelectorAll('*')) {
    if (el.tagName.toLowerCase() !== 'svg' && el.closest('svg')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < left - 0.5 || r.right > right + 0.5) {
      out.Overflow.push(name(el) + ' spans ' + Math.round(r.left) + '-' + Math.round(r.right) + ' px');
    }
  }
  const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  for (const svg of document.querySelectorAll('svg')) {
    const title = svg.getAttribute('aria-label'), frame = svg.getBoundingClientRect();
    const paths = [...svg.querySelectorAll('path[data-unit]')];
    out.Charts.push({Title: title, X: svg.dataset.xUnit || '', Y: svg.dataset.yUnit || '',
      SeriesUnits: [...new Set(paths.map((p) => p.dataset.unit))],
      YLabel: [...svg.querySelectorAll('.y-label')].map((t) => t.textContent),
      Series: paths.length, Marks: svg.querySelectorAll('.mark').length});
    for (const text of svg.querySelectorAll('text')) {
      const r = text.getBoundingClientRect();
      if (r.left < frame.left - 0.5 || r.right > frame.right + 0.5 || r.top < frame.top - 0.5 || r.bottom > frame.bottom + 0.5) {
        out.Overflow.push(title + ': text "' + text.textContent + '" outside the chart');
      }
    }
    const labels = [...svg.querySelectorAll('.mark-label')];
    for (let i = 0; i < labels.length; i++) {
      for (let j = i + 1; j < labels.length; j++) {
        if (overlap(labels[i].getBoundingClientRect(), labels[j].getBoundingClientRect())) {
          out.Overlaps.push(title + ': ' + labels[i].textContent + ' and ' + labels[j].textContent);
        }
      }
    }
  }
  for (const tok of document.querySelectorAll('.tok')) {
    if (tok.getClientRects().length !== 1) out.Split.push(tok.textContent);
  }
  out.Height = document.documentElement.scrollHeight;
  body.setAttribute('data-layout', btoa(JSON.stringify(out)));
})();`
