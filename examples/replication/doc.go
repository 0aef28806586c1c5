// Package replication is quorum-acknowledged replication of key/value
// writes over internode's transport: the write path of a Dynamo-style
// database (Cassandra, Riak, ScyllaDB), small enough to read and copy.
//
// A coordinator node takes a write (key, value) and stamps it with a
// timestamp. Replicas picks the Factor (3) nodes that own the key by
// rendezvous hashing, and the coordinator sends the write to each of them
// with transport.Request. A replica's Store applies it (the newest
// timestamp wins, and of two with the same timestamp the larger value, so
// replicas converge whatever order writes arrive in) and acknowledges. The write succeeds once a quorum (2 of 3) acknowledged:
// Quorum returns as soon as that happens, or fails with every replica's
// error as soon as it can no longer happen.
//
// Values may be of any size up to the transport's Config.Memory.MaxMessageSize
// less the encoding's (AppendMutation's) key and at most 14 bytes: a
// larger write fails at every remote replica with transport.ErrTooLarge,
// though a local replica (Config.Local) applied it. The transport routes each request by its encoded size: up to 64 KiB on
// the small lane, where it is coalesced with others, above that on the
// large lane, written from the value's own buffer in parts, so a 1 MiB
// value never delays the small writes behind it.
//
// # Using it
//
//  1. On every node, create a Store and register it as the handler of
//     Verb: t.Handle(replication.Verb, store).
//  2. On a coordinator, create a Replicator with New, giving it the
//     transport and its local Store (a coordinator that is itself one of a
//     key's replicas applies the write locally, without a message).
//  3. Call Write with the current members; it returns nil once a quorum
//     acknowledged, ErrUnavailable when too few members exist, or a
//     *QuorumError.
//  4. Before closing the transport, call Drain: Write returns at quorum,
//     but the slower replicas' requests go on in the background, as in
//     Cassandra, each bounded by Config.Timeout.
//
// # Bootstrap
//
// A node joining the cluster, or replacing one that lost its disk, must
// first copy the data it will own. Bootstrap asks peers (ServeBootstrap
// answers) for their data files (Store.WriteTo's format), which they send
// with the transport's SendFile: on a connection of its own, moved by the
// kernel with sendfile(2) and spliced into a file on arrival, checksummed
// end to end. Each file is then loaded with Store.Load, which merges by
// timestamp, so two overlapping copies are safe to load. Between them the
// peers must hold a copy of every key the node will own: a key's other
// replicas can be any Factor-1 of the other nodes, so ask every other node
// but at most Factor-2 of them (with Factor 3, all but one), not a fixed
// pair, which would leave the keys whose copies are elsewhere behind.
package replication
