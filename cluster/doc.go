// Package cluster says who the nodes of a cluster are and where they listen.
//
// The transport resolves a peer's address through a Membership and watches it
// for changes: when a member leaves, its connections close and its pending
// messages fail with a "peer left" error. A Membership that may tell of a
// Leave once the member is back (it tells its watchers later than its map
// changes) should implement LookupFromWatch, so that the transport can
// ignore such a Leave. Static is a fixed list that tests
// and small deployments edit by hand; the subpackage cluster/memberlist
// discovers members through hashicorp/memberlist.
package cluster
