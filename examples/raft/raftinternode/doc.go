// Package raftinternode is a raft.Transport for github.com/hashicorp/raft
// over internode's public API: a drop-in replacement for raft's
// NetworkTransport that shares the node's internode connections, limits
// and metrics with the rest of the application.
//
// # Use
//
//	opts := raftinternode.Options{}
//	cfg := transport.DefaultConfig() // NodeID, ClusterName, ListenAddr, Membership set as usual
//	opts.Configure(&cfg)             // heartbeats and votes on the urgent lane
//	node, err := transport.New(cfg)
//	node.Start()
//	trans := raftinternode.New(node, opts)
//	r, err := raft.NewRaft(raftCfg, fsm, logs, stable, snaps, trans)
//
// The caller's duties:
//
//  1. A server's raft ServerAddress is its internode node ID (the
//     transport's Config.NodeID, trans.LocalAddr()); use the same string
//     as its raft ServerID, so that a configuration reads one name per
//     server.
//  2. Every server in raft's configuration must be in the internode
//     Membership, which says where it listens. Before raft.AddVoter (or
//     AddNonvoter) adds a server at run time, add it to the membership —
//     with cluster.Static, Add(cluster.Member{ID: id, Addr: addr}) — and
//     remove it after raft.RemoveServer. A server the membership does not
//     know is unreachable: RPCs to it fail with transport.ErrUnknownPeer,
//     and its connections are refused in the handshake, which checks that
//     the peer is a member.
//  3. Every node uses the same Options.VerbBase; the seven verbs from it on
//     are the adapter's, and must not be the application's.
//  4. Close the raft transport after raft.Shutdown; close the internode
//     transport, which the application owns, after that. One raft
//     transport per internode transport at a time.
//
// # How the RPCs travel
//
// RequestVote, RequestPreVote, TimeoutNow and raft's heartbeat (an
// AppendEntries with no entries and no commit index) are internode
// Requests on verbs that Options.Configure pins to the urgent lane, so
// they never queue behind log replication; on the follower, heartbeats go
// to raft's heartbeat handler, not through the consumer channel.
// An AppendEntries outside a pipeline (raft sends those until a follower
// has caught up) is a Request, on the small or large lane by size, unless
// it is above Options.MaxRequestSize: then it goes on a stream, so that a
// batch of large entries never meets the transport's MaxMessageSize.
//
// AppendEntriesPipeline opens one internode stream per pipeline: requests
// and responses must stay in order, and Requests do not keep it — their
// handlers run concurrently, and a large batch takes another lane than a
// small one. The stream has a TCP connection of its own
// (transport.OwnConnection), as NetworkTransport's pipeline has: a
// pipeline is a chain of round trips, and on the shared stream session
// each would pass through smux's writer and reader goroutines on both
// sides. On the stream the leader writes framed requests and matches
// each response to the oldest unanswered request; the follower hands
// requests to raft one by one and writes the responses in the same order.
// Options.MaxInFlight bounds the requests unanswered.
//
// InstallSnapshot opens a stream on a connection of its own, writes the
// request and then copies the snapshot from raft's reader; the follower hands raft a reader
// over the stream, so a snapshot is never held in memory on either side.
//
// AppendEntries, request and response, has a codec of its own, field by
// field without reflection (appendcodec.go, about 4× faster than msgpack
// for a batch of 64 entries); the other RPC structs are msgpack, with
// hashicorp/go-msgpack, as NetworkTransport encodes them. codec.go draws
// the stream framing.
//
// A pipeline has no deadline on its stream, which would cost a timer per
// read and write: it closes the stream when requests have waited
// Options.Timeout, measured on the monotonic clock, with nothing written
// or read.
//
// A Transport is safe for concurrent use.
package raftinternode
