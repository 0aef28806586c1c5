package netnstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runHint is how to run these tests, for skip messages.
const runHint = "sudo INTERNODE_NETNS=1 go test ./internal/netnstest -run Netns -v"

// ipTimeout bounds one ip command; they take milliseconds.
const ipTimeout = 10 * time.Second

// nodeLink is a node's interface in its namespace, the node's end of its
// veth pair.
const nodeLink = "eth0"

// requireNetns skips the test unless it was asked for (INTERNODE_NETNS=1 or
// CI=true), runs as root and finds iproute2's ip.
func requireNetns(t *testing.T) {
	t.Helper()
	asked := os.Getenv("INTERNODE_NETNS") == "1" || os.Getenv("CI") == "true"
	root := os.Geteuid() == 0
	switch {
	case !asked && !root:
		t.Skip("network namespace tests need root and INTERNODE_NETNS=1 (or CI=true); run: " + runHint)
	case !asked:
		t.Skip("network namespace tests are off: set INTERNODE_NETNS=1 (or CI=true) to run them: " + runHint)
	case !root:
		t.Skipf("network namespace tests need root (ip netns add); running as uid %d; run: %s", os.Geteuid(), runHint)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("network namespace tests need iproute2's ip: %v", err)
	}
}

// lab is the test's private network: a switch namespace holding a bridge,
// and one namespace per node whose eth0 is a veth pair's end, the other end
// being a port of the bridge. Nothing is created in the root namespace.
type lab struct {
	t      *testing.T
	subnet int    // the third octet of 10.213.<subnet>.0/24
	sw     string // the switch namespace
	nodes  []string
}

// newLab builds a lab for count nodes; its namespaces are deleted when the
// test ends. It skips the test if namespaces cannot be created here.
func newLab(t *testing.T, count int) *lab {
	t.Helper()
	suffix := fmt.Sprintf("%08x", rand.Uint32())
	l := &lab{t: t, subnet: 1 + rand.IntN(254), sw: "internode-" + suffix + "-sw"}
	if out, err := runIP("netns", "add", l.sw); err != nil {
		t.Skipf("cannot create a network namespace (ip netns add %s): %v: %s", l.sw, err, out)
	}
	l.cleanupNamespace(l.sw)
	l.must("-n", l.sw, "link", "add", "br0", "type", "bridge")
	l.must("-n", l.sw, "link", "set", "br0", "up")
	l.must("-n", l.sw, "link", "set", "lo", "up")
	for i := 1; i <= count; i++ {
		ns := fmt.Sprintf("internode-%s-n%d", suffix, i)
		l.must("netns", "add", ns)
		l.cleanupNamespace(ns)
		l.nodes = append(l.nodes, ns)
		// Both ends are born outside the root namespace: the port in the
		// switch, its peer directly in the node's namespace.
		l.must("-n", l.sw, "link", "add", l.port(i), "type", "veth", "peer", "name", nodeLink, "netns", ns)
		l.must("-n", l.sw, "link", "set", l.port(i), "master", "br0")
		l.must("-n", l.sw, "link", "set", l.port(i), "up")
		l.must("-n", ns, "addr", "add", l.nodeIP(i)+"/24", "dev", nodeLink)
		l.must("-n", ns, "link", "set", nodeLink, "up")
		l.must("-n", ns, "link", "set", "lo", "up")
	}
	return l
}

// namespace returns node i's namespace (nodes count from 1).
func (l *lab) namespace(i int) string { return l.nodes[i-1] }

// nodeIP returns node i's address.
func (l *lab) nodeIP(i int) string { return fmt.Sprintf("10.213.%d.%d", l.subnet, i) }

// port names node i's port on the switch.
func (l *lab) port(i int) string { return fmt.Sprintf("v%d", i) }

// setPort brings node i's switch port down (a pulled cable: no packet passes
// either way, no connection is reset) or back up.
func (l *lab) setPort(i int, up bool) {
	l.t.Helper()
	state := "down"
	if up {
		state = "up"
	}
	l.must("-n", l.sw, "link", "set", l.port(i), state)
}

// Ways to partition a node: nothing tells anyone, no connection is reset,
// the node's packets just stop arriving.
const (
	// partitionByNft drops every frame to or from the node's port in the
	// bridge's forward hook, with nft in the switch namespace: every link
	// stays up, as when a switch or a firewall between hosts fails.
	partitionByNft = "nft"
	// partitionByLink takes the node's switch port down: its eth0 loses
	// carrier as well, as with a pulled cable.
	partitionByLink = "link"
)

// partitionTable is the nft table, in the switch namespace, that holds a
// partition's drop rules; deleting it heals the partition.
const partitionTable = "internode_partition"

// partition isolates node i by the given method (partitionByNft or
// partitionByLink); heal undoes it.
func (l *lab) partition(i int, by string) {
	l.t.Helper()
	if by == partitionByLink {
		l.setPort(i, false)
		return
	}
	l.nft(fmt.Sprintf("add table bridge %[1]s\n"+
		"add chain bridge %[1]s forward { type filter hook forward priority 0; policy accept; }\n"+
		"add rule bridge %[1]s forward iifname %[2]q counter drop\n"+
		"add rule bridge %[1]s forward oifname %[2]q counter drop\n", partitionTable, l.port(i)))
}

// heal ends the partition of node i made by partition(i, by).
func (l *lab) heal(i int, by string) {
	l.t.Helper()
	if by == partitionByLink {
		l.setPort(i, true)
		return
	}
	l.nft(fmt.Sprintf("delete table bridge %s\n", partitionTable))
}

// partitionDrops reports what the nft partition dropped so far: the
// frames from and to the node's port.
func (l *lab) partitionDrops() (from, to uint64) {
	l.t.Helper()
	out := l.nft(fmt.Sprintf("list table bridge %s\n", partitionTable))
	counts := regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(out, -1)
	if len(counts) != 2 {
		l.t.Fatalf("nft: want two counters in the partition table, got: %s", out)
	}
	from, _ = strconv.ParseUint(counts[0][1], 10, 64)
	to, _ = strconv.ParseUint(counts[1][1], 10, 64)
	return from, to
}

// nft runs an nft script in the switch namespace and returns its output.
func (l *lab) nft(script string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.sw, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft in %s: %v: %s (script: %q)", l.sw, err, out, script)
	}
	return string(out)
}

func (l *lab) must(args ...string) {
	l.t.Helper()
	if out, err := runIP(args...); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// cleanupNamespace deletes ns when the test ends. Node processes are
// stopped first: their cleanups were registered later, so they run earlier.
func (l *lab) cleanupNamespace(ns string) {
	l.t.Cleanup(func() {
		if out, err := runIP("netns", "del", ns); err != nil {
			l.t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
}

func runIP(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	return out, err
}
