// Package gossip is a small heartbeat gossip protocol built on internode's
// transport: the part of a distributed database that lets every node learn
// that every other node is alive, without any node talking to all others.
//
// It is meant to be read and copied. Each node keeps a table of heartbeats,
// one Entry per node it has heard of. Every round (DefaultInterval, 100 ms)
// the node increments its own heartbeat and sends its whole table, the
// digest, to Fanout (3) peers picked at random (a table larger than
// MaxDigestEntries goes out that many entries a round, in turns). A node
// receiving a digest keeps, for every node, the newer of the two entries.
// News therefore spreads in O(log n) rounds, and a node whose heartbeat
// stops moving is suspect (Gossiper.Stale). One that stands still for
// Config.ForgetAfter (a minute) has departed and is dropped from the table,
// so that the table does not grow for ever as nodes come and go.
//
// An Entry is a version of its node's state: (Generation, Heartbeat),
// compared in that order. A restarted node picks a new, larger Generation
// (its start time), so its fresh heartbeat of 0 still beats what the others
// remember from before the restart. Should its clock be behind its previous
// run's, the others' digests show it a larger generation of its own ID, and
// it moves to one above that.
//
// # Using it
//
//  1. Call Register on the transport.Config before transport.New: it pins
//     Verb to the urgent lane, so digests never queue behind bulk traffic
//     (replication, streaming) on the same connection.
//  2. Create the Gossiper with New, giving it the transport (to send) and
//     a function returning the current peers (from your membership).
//  3. Register it as the handler of Verb: t.Handle(gossip.Verb, g).
//  4. Drive it: go g.Run(ctx, time.NewTicker(gossip.DefaultInterval).C),
//     or call Round yourself from your own loop.
//
// Digests are sent one-way (transport.Send) with a deadline of one
// interval: a digest that could not be written by the time the next one is
// due is worthless, so the transport drops it and counts it as expired
// rather than queueing stale news behind a slow peer.
//
// The protocol logic (State, PickPeers, the digest encoding) is pure: it
// takes the time as an argument and draws from a seeded math/rand/v2
// source, so it is tested deterministically. Only the transport owns
// sockets and goroutines; the Gossiper owns none (Run runs on the caller's).
package gossip
