package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// shapedLink is two network namespaces joined by a veth pair whose two
// ends each send through a token-bucket filter (tc tbf): a link of a
// given rate in each direction, as between two hosts. Addresses are
// 10.<a>.<b>.1 (the sender's end) and .2 (the receiver's). It needs root
// and iproute2's ip and tc.
type shapedLink struct {
	sendNS, recvNS     string
	sendDev, recvDev   string
	sendAddr, recvAddr string // IPv4, no prefix
}

// linkUnavailable says why no shaped link can be made here, or nil.
func linkUnavailable() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root, for network namespaces and tc")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs iproute2's %s: %w", tool, err)
		}
	}
	return nil
}

// newShapedLink creates the namespaces, the veth pair and the shaping,
// with names and addresses derived from this process's ID so that runs
// side by side do not collide. rate and burst are tc's syntax ("200mbit",
// "128kb"). On error it removes what it made.
func newShapedLink(rate, burst string) (*shapedLink, error) {
	pid := os.Getpid()
	l := &shapedLink{
		sendNS: fmt.Sprintf("inode-cmp-s%d", pid), recvNS: fmt.Sprintf("inode-cmp-r%d", pid),
		sendDev: fmt.Sprintf("icmps%d", pid%1_000_000), recvDev: fmt.Sprintf("icmpr%d", pid%1_000_000),
		sendAddr: fmt.Sprintf("10.%d.%d.1", 200+pid/250%50, pid%250),
		recvAddr: fmt.Sprintf("10.%d.%d.2", 200+pid/250%50, pid%250),
	}
	steps := [][]string{
		{"ip", "netns", "add", l.sendNS},
		{"ip", "netns", "add", l.recvNS},
		{"ip", "link", "add", l.sendDev, "netns", l.sendNS, "type", "veth", "peer", "name", l.recvDev, "netns", l.recvNS},
		{"ip", "-n", l.sendNS, "addr", "add", l.sendAddr + "/24", "dev", l.sendDev},
		{"ip", "-n", l.recvNS, "addr", "add", l.recvAddr + "/24", "dev", l.recvDev},
		{"ip", "-n", l.sendNS, "link", "set", l.sendDev, "up"},
		{"ip", "-n", l.recvNS, "link", "set", l.recvDev, "up"},
		{"ip", "-n", l.sendNS, "link", "set", "lo", "up"},
		{"ip", "-n", l.recvNS, "link", "set", "lo", "up"},
		// latency bounds the queue in the filter: with 20 ms at 200 Mbit/s,
		// 500 KB wait at most, like a switch port's buffer.
		{"tc", "-n", l.sendNS, "qdisc", "add", "dev", l.sendDev, "root", "tbf", "rate", rate, "burst", burst, "latency", "20ms"},
		{"tc", "-n", l.recvNS, "qdisc", "add", "dev", l.recvDev, "root", "tbf", "rate", rate, "burst", burst, "latency", "20ms"},
	}
	for _, step := range steps {
		if err := command(step[0], step[1:]...); err != nil {
			l.close()
			return nil, err
		}
	}
	return l, nil
}

// command returns a command that runs name with args inside namespace ns.
func (l *shapedLink) command(ns, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// close deletes the namespaces; the veth pair goes with them.
func (l *shapedLink) close() error {
	var errs []error
	for _, ns := range []string{l.sendNS, l.recvNS} {
		if err := command("ip", "netns", "delete", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
