package netnstest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds on a node process; none is reached when things work.
const (
	nodeStartLimit = 15 * time.Second // until the node prints readyResult
	commandLimit   = 5 * time.Second  // for an answer, beyond the time its calls may take
	quitLimit      = 10 * time.Second // for the answer to quit, and again for the exit
	logTail        = 64 << 10         // bytes of a node's log printed when the test fails
)

var showLogs = flag.Bool("netns.logs", false, "print the nodes' logs even when the test passes")

// nodeProc is the test's handle on a node process. Its methods must be
// called from the test's goroutine.
type nodeProc struct {
	t       *testing.T
	id      string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	answers chan answer   // closed when the node's stdout ends
	logs    *tailBuffer   // stderr and stray stdout lines
	exited  chan struct{} // closed after Wait returned
	waitErr error         // set before exited is closed
}

// nodeOptions tune a node beyond the lab's defaults; the zero value keeps
// them.
type nodeOptions struct {
	// ReconnectInterval is cluster/memberlist's Config.ReconnectInterval:
	// how often the node tries to rejoin members it declared dead. Zero
	// keeps memberlist's default (5 s).
	ReconnectInterval time.Duration
	// SuspicionMult is memberlist's: how many probe intervals a member
	// stays suspected before it is declared dead. Zero keeps the lab's
	// fast failure detection.
	SuspicionMult int
}

func (o nodeOptions) env() []string {
	var env []string
	if o.ReconnectInterval != 0 {
		env = append(env, envReconnect+"="+o.ReconnectInterval.String())
	}
	if o.SuspicionMult != 0 {
		env = append(env, envSuspicion+"="+strconv.Itoa(o.SuspicionMult))
	}
	return env
}

// startNode runs node i of the lab in its namespace, joining through seed
// (empty for the first node), and waits until it serves. The process is
// stopped, at the latest, when the test ends.
func startNode(t *testing.T, l *lab, i int, seed string, opts nodeOptions) *nodeProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{
		t:       t,
		id:      fmt.Sprintf("n%d", i),
		answers: make(chan answer, 16),
		logs:    &tailBuffer{limit: 1 << 20},
		exited:  make(chan struct{}),
	}
	p.cmd = exec.Command("ip", "netns", "exec", l.namespace(i), exe,
		"-test.run=^TestHelperNode$", "-test.v=false", "-test.timeout=2m")
	p.cmd.Env = append(os.Environ(),
		envNode+"="+p.id,
		envIP+"="+l.nodeIP(i),
		envSeed+"="+seed)
	p.cmd.Env = append(p.cmd.Env, opts.env()...)
	p.cmd.Stderr = p.logs
	p.cmd.WaitDelay = 5 * time.Second
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.id, err)
	}
	go p.readAnswers(stdout)
	t.Cleanup(p.stop)

	var ready readyResult
	p.await("start", nodeStartLimit, &ready)
	t.Logf("%s: transport on %s, gossip on %s, namespace %s", p.id, ready.TransportAddr, ready.GossipAddr, l.namespace(i))
	return p
}

// readAnswers passes answer lines on and keeps the rest with the logs;
// then it reaps the process.
func (p *nodeProc) readAnswers(stdout io.Reader) {
	defer close(p.exited)
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		rest, ok := strings.CutPrefix(lines.Text(), answerPrefix)
		if !ok {
			fmt.Fprintf(p.logs, "stdout: %s\n", lines.Text())
			continue
		}
		var a answer
		if err := json.Unmarshal([]byte(rest), &a); err != nil {
			a = answer{Err: fmt.Sprintf("undecodable answer %q: %v", rest, err)}
		}
		p.answers <- a // one per command: never more than a few unread
	}
	close(p.answers)
	p.waitErr = p.cmd.Wait()
}

// do sends a command and decodes its answer into result (unless nil). The
// answer must come within calls (how long the command's own calls may
// take) plus commandLimit.
func (p *nodeProc) do(calls time.Duration, result any, format string, args ...any) {
	p.t.Helper()
	command := fmt.Sprintf(format, args...)
	if _, err := io.WriteString(p.stdin, command+"\n"); err != nil {
		p.t.Fatalf("%s: %s: %v", p.id, command, err)
	}
	p.await(command, calls+commandLimit, result)
}

func (p *nodeProc) await(what string, limit time.Duration, result any) {
	p.t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case a, ok := <-p.answers:
		if !ok {
			p.t.Fatalf("%s: %s: the node exited without answering", p.id, what)
		}
		if a.Err != "" {
			p.t.Fatalf("%s: %s: %s", p.id, what, a.Err)
		}
		if result != nil {
			if err := json.Unmarshal(a.Result, result); err != nil {
				p.t.Fatalf("%s: %s: decode %s: %v", p.id, what, a.Result, err)
			}
		}
	case <-timer.C:
		p.t.Fatalf("%s: %s: no answer within %v", p.id, what, limit)
	}
}

// quitAll asks every node to shut down gracefully, all at once, and checks
// that each exits with status 0 (its goroutine-leak check included).
func quitAll(t *testing.T, nodes []*nodeProc) {
	t.Helper()
	for _, p := range nodes {
		if _, err := io.WriteString(p.stdin, "quit\n"); err != nil {
			t.Fatalf("%s: quit: %v", p.id, err)
		}
	}
	for _, p := range nodes {
		p.await("quit", quitLimit, nil)
	}
	deadline := time.NewTimer(quitLimit)
	defer deadline.Stop()
	for _, p := range nodes {
		select {
		case <-p.exited:
		case <-deadline.C:
			t.Fatalf("%s: still running %v after quit", p.id, quitLimit)
		}
		if p.waitErr != nil {
			t.Errorf("%s: exit: %v", p.id, p.waitErr)
		}
	}
}

// stop ends the process if it still runs (closing stdin makes a node stop;
// a stuck one is killed) and, if the test failed, prints its log.
func (p *nodeProc) stop() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(quitLimit):
		_ = p.cmd.Process.Kill()
		<-p.exited // Wait returns: WaitDelay bounds the pipes
	}
	if p.t.Failed() || *showLogs {
		p.t.Logf("%s: exit %v; log (last %d KiB):\n%s", p.id, p.waitErr, logTail>>10, p.logs.tail(logTail))
	}
}

// tailBuffer keeps the last bytes written to it, about limit of them.
// It is safe for concurrent use.
type tailBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.buf.Len() > 2*b.limit {
		b.buf.Next(b.buf.Len() - b.limit)
	}
	return len(p), nil
}

func (b *tailBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	data := b.buf.Bytes()
	return string(data[max(0, len(data)-n):])
}
