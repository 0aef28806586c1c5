package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The link command emulates a link whose packet rate binds, with network
// namespaces, veth pairs and a tbf qdisc (this kernel has no netem):
//
//	router:  [send] s0 ──── r0 [router] r1 ──── d0 [recv]
//	         10.77.1.1/24  10.77.1.2  10.77.2.1   10.77.2.2/24
//	                                  └ tbf on r1's egress
//
//	veth:    [send] s0 ──────────── d0 [recv]
//	         10.77.1.1/24           10.77.1.2/24
//	         └ tbf on s0's egress
//
// The cap is "tbf rate pps×mpu mpu mpu": every packet is billed at least mpu
// bytes, and mpu exceeds the largest frame, so the qdisc passes at most pps
// packets a second whatever their size. On the router the queue builds where
// the sender cannot see it (as behind a hypervisor's NIC); on the plain pair
// it builds in the sender's own qdisc, where TCP's small-queue logic and
// autocorking see it. Offloads (TSO, GSO, GRO) are off on every veth so
// that a packet on the wire is a packet counted.

// linkMPU is the least size tbf bills a packet, in bytes: more than a full
// frame (1514 bytes with a 1500-byte MTU), so every packet costs the same.
const linkMPU = 2000

// linkTopology is one emulated network, set up by setupLink and removed by
// its close.
type linkTopology struct {
	name          string // "router" or "veth"
	sendNS        string // namespace of the sending process
	recvNS        string // namespace of the receiving process
	routerNS      string // "" on the plain pair
	sendAddr      string // the sender's IP
	recvAddr      string // the receiver's IP
	sendDev       string // the sender's veth, whose tx_packets are counted
	namespaces    []string
	packetsPerSec int
}

// setupLink creates the namespaces of topology name ("router" or "veth")
// with a cap of pps packets a second. Names carry a random suffix, so runs
// never collide; on error everything created so far is removed.
func setupLink(name string, pps int) (*linkTopology, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("link: needs root (network namespaces, tc)")
	}
	for _, tool := range []string{"ip", "tc", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("link: %s not found (apt-get install iproute2 ethtool): %w", tool, err)
		}
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	tag := hex.EncodeToString(suffix[:])
	t := &linkTopology{name: name, sendNS: "lnk-s-" + tag, recvNS: "lnk-d-" + tag,
		sendAddr: "10.77.1.1", sendDev: "s0", packetsPerSec: pps}
	tbf := func(ns, dev string) []string {
		rate := pps * linkMPU // bytes/s
		return []string{"-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
			"rate", strconv.Itoa(rate*8) + "bit", "burst", strconv.Itoa(4 * linkMPU),
			"mpu", strconv.Itoa(linkMPU), "limit", strconv.Itoa(256 << 10)}
	}
	var steps [][]string
	switch name {
	case "router":
		t.routerNS = "lnk-r-" + tag
		t.recvAddr = "10.77.2.2"
		t.namespaces = []string{t.sendNS, t.routerNS, t.recvNS}
		steps = [][]string{
			{"ip", "-n", t.sendNS, "link", "add", "s0", "type", "veth", "peer", "name", "r0", "netns", t.routerNS},
			{"ip", "-n", t.routerNS, "link", "add", "r1", "type", "veth", "peer", "name", "d0", "netns", t.recvNS},
			{"ip", "-n", t.sendNS, "addr", "add", "10.77.1.1/24", "dev", "s0"},
			{"ip", "-n", t.routerNS, "addr", "add", "10.77.1.2/24", "dev", "r0"},
			{"ip", "-n", t.routerNS, "addr", "add", "10.77.2.1/24", "dev", "r1"},
			{"ip", "-n", t.recvNS, "addr", "add", "10.77.2.2/24", "dev", "d0"},
			{"ip", "netns", "exec", t.routerNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		}
		steps = append(steps, t.upAll(map[string][]string{t.sendNS: {"s0"}, t.routerNS: {"r0", "r1"}, t.recvNS: {"d0"}})...)
		steps = append(steps,
			[]string{"ip", "-n", t.sendNS, "route", "add", "default", "via", "10.77.1.2"},
			[]string{"ip", "-n", t.recvNS, "route", "add", "default", "via", "10.77.2.1"},
			append([]string{"tc"}, tbf(t.routerNS, "r1")...))
	case "veth":
		t.recvAddr = "10.77.1.2"
		t.namespaces = []string{t.sendNS, t.recvNS}
		steps = [][]string{
			{"ip", "-n", t.sendNS, "link", "add", "s0", "type", "veth", "peer", "name", "d0", "netns", t.recvNS},
			{"ip", "-n", t.sendNS, "addr", "add", "10.77.1.1/24", "dev", "s0"},
			{"ip", "-n", t.recvNS, "addr", "add", "10.77.1.2/24", "dev", "d0"},
		}
		steps = append(steps, t.upAll(map[string][]string{t.sendNS: {"s0"}, t.recvNS: {"d0"}})...)
		steps = append(steps, append([]string{"tc"}, tbf(t.sendNS, "s0")...))
	default:
		return nil, fmt.Errorf("link: unknown topology %q (router, veth)", name)
	}
	var created []string
	for _, ns := range t.namespaces {
		if err := command("ip", "netns", "add", ns); err != nil {
			t.namespaces = created
			t.close()
			return nil, err
		}
		created = append(created, ns)
	}
	for _, step := range steps {
		if err := command(step[0], step[1:]...); err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

// upAll returns the commands that bring up lo and the given devices of each
// namespace with their offloads off.
func (t *linkTopology) upAll(devs map[string][]string) [][]string {
	var steps [][]string
	for _, ns := range t.namespaces {
		steps = append(steps, []string{"ip", "-n", ns, "link", "set", "lo", "up"})
		for _, dev := range devs[ns] {
			steps = append(steps,
				[]string{"ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"},
				[]string{"ip", "-n", ns, "link", "set", dev, "up"})
		}
	}
	return steps
}

// close deletes the namespaces (and with them their veths and qdiscs).
func (t *linkTopology) close() error {
	var errs []error
	for _, ns := range t.namespaces {
		errs = append(errs, command("ip", "netns", "del", ns))
	}
	t.namespaces = nil
	return errors.Join(errs...)
}

// command runs name with args and returns its output in the error if it
// fails.
func command(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// txPackets returns the packets dev has sent, from the sysfs of the
// calling process's network namespace.
func txPackets(dev string) (uint64, error) {
	b, err := os.ReadFile("/sys/class/net/" + dev + "/statistics/tx_packets")
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
