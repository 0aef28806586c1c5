// Package routing chooses the lane a message travels on.
//
// Every ordered pair of nodes has one outbound connection per Lane. The
// Router picks the lane from the message's encoded size (messages above the
// threshold, 64 KiB by default, go to Large) unless the verb has an override
// (gossip and heartbeats usually go to Urgent so they never queue behind
// bulk). The package is pure: no I/O, no goroutines, no clock.
package routing
