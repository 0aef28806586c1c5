// Package netnstest runs internode on several simulated hosts, one Linux
// network namespace per node, to test what a single-process test on
// loopback cannot: a real link going down and coming back between nodes
// that discover each other through cluster/memberlist.
//
// The package holds only tests. TestNetnsThreeNodes and
// TestNetnsPartitionHeals each build this topology, private to the test
// (TestNetnsPacketsPerExchange builds it with two nodes):
//
//	         switch namespace (bridge br0)
//	       /             |              \
//	veth v1          veth v2          veth v3
//	   |                |                |
//	eth0 10.213.X.1  eth0 10.213.X.2  eth0 10.213.X.3
//	namespace n1     namespace n2     namespace n3
//
// X is random, the namespace names carry a random suffix, and the veth pairs
// are created inside the switch namespace with their other end placed
// directly in a node's namespace, so the root namespace gets no interface,
// address or route. Every namespace is deleted when the test ends, passed or
// failed.
//
// Each node is a separate process: the test binary re-executed with
// "ip netns exec <ns> <test binary> -test.run=^TestHelperNode$", told by
// environment variables (INTERNODE_NETNS_NODE and others) which node to be.
// TestHelperNode returns at once when those are unset. A node runs a
// transport.Transport on <its address>:7000 and a cluster/memberlist
// Membership gossiping on <its address>:7946 with fast failure detection,
// serves an echo verb (requests) and a counting verb (one-way messages), and
// answers line commands on stdin (members, request, send, start, repeat,
// wait, stats, received, arrivals, events, contacts, counters, exchange,
// rawserve, rawecho, quit) with one JSON line each on stdout, prefixed so that nothing else printed there can be
// mistaken for an answer. Times a node reports are wall clock: the
// namespaces share the machine's clock, so the test sets them against its
// own.
//
// # A link cut and restored
//
// TestNetnsThreeNodes, with n1 as the observer:
//
//  1. The three nodes find each other; n1's requests and one-way messages to
//     n3 get through.
//  2. n3's switch port goes down: a pulled cable, no connection is reset.
//  3. n1 sends n3 one-way messages on its connected small lane, and large
//     ones on a lane that never connected (its writer must dial a peer that
//     cannot answer); every message must be refused at once or end in one
//     counted outcome: written (ConnStats.MessagesSent) or dropped with a
//     reason (ConnStats.Dropped and Config.OnDropped).
//  4. n1's requests to n3 (1 s timeout) must each fail within about their
//     timeout, and n1's membership must drop n3 within 15 s. A request
//     still waiting at that moment must fail with ErrPeerLeft then, and the
//     transport must handle the Leave promptly, since memberlist's event
//     delivery waits for it. Afterwards calls to n3 must fail at once with
//     ErrUnknownPeer or ErrPeerLeft.
//  5. After an outage of -netns.cuthold (default 5 s) the port comes back
//     up: n3 must rejoin everyone's membership, requests must succeed again
//     and every one-way message sent after recovery must reach n3.
//
// The measured figures (detection time, how long each failing call took,
// the counters) are logged as the test goes, so that a failure late in the
// scenario keeps them.
//
// # A partition healed
//
// TestNetnsPartitionHeals measures how soon traffic resumes after a
// partition heals, against a target: requests to the healed node succeed
// again within 1.5 s of the heal.
//
//  1. n1 and n3 exchange traffic both ways for 1.5 s: echo requests every
//     20 ms on the small lane, 256 KiB one-way messages every 50 ms on the
//     large lane, so that every connection between them, in both
//     directions, has data in flight when the partition starts.
//  2. n3 is partitioned for -netns.partitionhold (default 10 s): nft drop
//     rules in the switch's bridge forward hook discard every frame to or
//     from its port. Every link stays up, nobody is told, no connection is
//     reset; TCP retransmits into the void and backs off. (Without nft the
//     test takes n3's switch port down instead, and says so.) Memberlist is
//     set to suspect n3 for longer than the partition lasts, so that
//     neither side declares the other dead and the transport keeps its
//     connections: the case where nothing but the transport can notice
//     that they are stuck. -netns.partitiondead keeps the lab's fast
//     failure detection instead: the peers are declared dead, their
//     connections closed, and rejoin after the heal.
//  3. Throughout the partition n1 and n3 keep requesting from each other
//     (every 100 ms, 500 ms timeout), so that writers have pending data;
//     no request may succeed and each must fail within about its timeout.
//  4. From 1 s before the heal, each side sends the other a request
//     (300 ms timeout) and a one-way message every 50 ms, each on its own
//     goroutine, so that what is measured is the transport, not the
//     polling.
//  5. From the heal instant the test reports when memberlist reached the
//     other side again (its first probe answered or alive message heard,
//     and the Join if it had declared the peer dead), when the first
//     request succeeded each way, and when the first one-way message
//     arrived each way. The target is checked on n1 → n3 requests; any
//     time memberlist took beyond its 1 s share is not counted against
//     the transport, and the figures say which part was slow. Traffic
//     that never resumes within 8 s fails the test either way.
//  6. Every one-way message either side accepted must have one counted
//     outcome, written (MessagesSent of the large lane, which nothing else
//     uses) or dropped with a reason (OnDropped), and none may arrive
//     twice.
//
// # Packets per exchange
//
// TestNetnsPacketsPerExchange counts what a request/response exchange
// costs on the link, against a target: at light load, at most 2.2 packets
// per exchange, both directions and ACKs included. Plain TCP with one
// exchange in flight needs 2: the request and the response, each carrying
// the ACK of the other.
//
//  1. n1 and n2 find each other; 100 warm-up exchanges dial every
//     connection the exchanges use, both ways.
//  2. n1 makes 2000 echo requests of 64 bytes to n2, one in flight,
//     reading its eth0's packet counters (/sys/class/net/eth0/statistics,
//     which "ip netns exec" mounts for the namespace) just before the
//     first and just after the last.
//  3. The background (memberlist's probes and push/pull, the transport's
//     keepalives) is counted over an idle window as long as that run, and
//     at least 2 s: memberlist's push/pull comes in bursts once a second,
//     which a shorter window would catch or miss by chance. Its rate times
//     each run's length is taken off that run's counts.
//  4. The same 2000 exchanges with 16 in flight, logged for reference and
//     not checked: under load the transport coalesces messages.
//  5. The baseline: 2000 exchanges of 64 bytes over plain TCP (TCP_NODELAY,
//     one in flight, one connection) with an echo server in n2's
//     namespace. It must measure 2 ± 0.1 packets per exchange, or the
//     measurement itself is off and the test fails saying so.
//
// Every figure is logged: exchanges, packets each way, the background,
// packets and bytes per exchange for each run. The target is checked on
// the light run. The test takes under 10 seconds.
//
// # Faults between hosts, in one process
//
// The tests of the *_linux_test.go files run every transport in the test
// process, each one's sockets in its node's namespace of a lab (a socket
// belongs to the namespace of the thread that made it: Config.Listen and
// Config.Dialer make theirs on a thread that entered the node's namespace,
// inproc_linux_test.go), with a static membership, so that they can read
// Stats and Health directly. Each fault is made under the transports'
// feet, and each test checks that every connection is found dead within
// its documented bound, that traffic resumes once the fault ends, and
// that every one-way message accepted meanwhile has one counted outcome:
//
//   - TestNetnsSilentBlackholeHeals: nft drops every frame between n1 and
//     n2, both ways or one way only, for twice Timeouts.Keepalive.
//   - TestNetnsPeerRebootedBehindADeadLinkIsReplaced: n2's link goes
//     down, its transport closes and its sockets are destroyed (ss -K),
//     their RSTs lost; a new n2 starts on the same address and the link
//     comes back.
//   - TestNetnsTrickleLinkKeepsSmallLanesMoving: tbf slows n1's link to
//     64 kbit/s under large messages; urgent messages and
//     requests must keep their bounds, and Close must not hang.
//   - TestNetnsDeafListenerFailsRequestsThenRecovers: n2's address held
//     by a listener that accepts and never reads.
//   - TestNetnsShutdownDuringABlackhole, TestNetnsStreamAcrossABlackhole:
//     Shutdown, and a session stream, across a blackhole.
//
// Each takes under 20 seconds; all of them together under a minute.
//
// # Running
//
// The test needs root (ip netns add) and iproute2, and runs only when asked:
//
//	sudo INTERNODE_NETNS=1 go test ./internal/netnstest -run Netns -v
//
// If sudo resets PATH so that go is not found, use
// sudo env "PATH=$PATH" INTERNODE_NETNS=1 go test ... instead. They also
// run when CI=true and the user is root, as in .ci/run. Otherwise, and when
// "ip netns add" fails (a container without CAP_SYS_ADMIN, for instance),
// they skip and say why. TestNetnsPartitionHeals uses nft (Debian package
// nftables) when it is installed. TestNetnsThreeNodes takes under 30
// seconds, TestNetnsPartitionHeals under 30 with the default hold,
// TestNetnsPacketsPerExchange under 10; run one at a time (-run
// ThreeNodes, -run Partition, -run Packets) on a busy machine.
//
// Flags (go test passes them on to the test binary): -netns.cuthold sets how long n3's link stays down
// (0: only as long as the checks of the cut take, about a second);
// -netns.large sets how many large messages are sent during the cut (0:
// none); -netns.partitionhold, -netns.partitionby ("nft" or "link") and
// -netns.partitiondead shape TestNetnsPartitionHeals' partition;
// -netns.logs prints the nodes' logs (memberlist's and the transport's, at
// debug level) even when the test passes. They are printed anyway when it
// fails.
package netnstest
