// Package memberlist discovers the members of an internode cluster with
// hashicorp/memberlist: SWIM-style gossip and failure detection, so that a
// real cluster finds its nodes without a hand-written gossip protocol.
//
// Each node runs one Membership. It gossips on its own address (BindAddr,
// UDP and TCP) and carries the node's internode transport address in its
// memberlist metadata, so Members and Lookup return transport addresses,
// ready for the transport to dial:
//
//	m, err := memberlist.Join(memberlist.Config{
//		NodeID:        "n2",
//		TransportAddr: "10.0.0.2:7000",   // where internode listens
//		BindAddr:      "10.0.0.2:7946",   // where memberlist gossips
//		Seeds:         []string{"10.0.0.1:7946"},
//	})
//	if err != nil { ... }
//	defer m.Close()
//	cfg.Membership = m // transport.Config
//
// The caller's duties:
//
//  1. Give every node a unique NodeID. A node that restarts under the same
//     ID once its old process has left or been declared dead appears to
//     the others as a Leave followed by a Join. One that restarts at the
//     same gossip address before that stays the same member: no Leave is
//     told, a new transport address arrives as an Update, and the same one
//     as no event at all (the transport's connections to the old process
//     end and are dialled again).
//  2. Pass the GossipAddr of one or more running nodes as Seeds; the first
//     node starts with none, or with only itself. Join fails if no seed
//     other than this node answers.
//  3. Call Watch before Members, and apply events as "set" (Join, Update)
//     and "delete" (Leave); see Watch for why duplicates can occur.
//  4. On shutdown call Leave, so the others learn at once, then Close. A
//     Close without Leave looks like a crash: the others report a Leave only
//     after failure detection, a few seconds with memberlist's LAN defaults,
//     and keep trying to reconnect to it (see below).
//
// Memberlist alone never heals a partition that outlasts failure detection:
// both sides declare each other dead, and memberlist only probes and
// exchanges state with members it believes alive. So, as hashicorp/serf
// does, each Membership remembers the members that failed (were declared
// dead rather than left with Leave) for Config.ReconnectTimeout (24 h by
// default) and, every Config.ReconnectInterval (5 s by default), tries to
// join one of them again, and the Seeds when it knows no other live member.
// A member that comes back is forgotten. A failed member's address is
// joined only if the node there answers a ping by the member's name: a node
// that took the address since is not joined. memberlist itself still
// gossips to a dead member's address for GossipToTheDeadTime (30 s on a
// LAN), and a seed may name another cluster's node: where clusters share a
// network, give each its own Label or SecretKey in Config.Tune, so that
// they never merge. To tell a graceful leave from a failure (memberlist
// does not), Leave first gossips this node's metadata with a leaving flag;
// see Membership.Leave.
//
// Members whose metadata is missing or malformed (for example a process
// that speaks memberlist but is not internode) are left out and logged.
// Memberlist's defaults (DefaultLANConfig) suit a LAN; Config.Tune adjusts
// timings, encryption and the rest.
//
// Memberlist calls its delegates synchronously and must not be blocked, so
// events go through a queue to one goroutine that calls the watchers. The
// queue is bounded by merging each member's pending changes (at most two
// events per member), never by dropping one; see Membership.Watch.
package memberlist
