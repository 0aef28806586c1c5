// Package cluster says who the nodes of a cluster are and where they listen.
//
// The transport resolves a peer's address through a Membership and watches it
// for changes: when a member leaves, its connections close and its pending
// messages fail with a "peer left" error. Static is a fixed list that tests
// and small deployments edit by hand; the subpackage cluster/memberlist
// discovers members through hashicorp/memberlist.
package cluster
