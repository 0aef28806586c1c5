// Package coalescing holds the per-connection policies that decide how long a
// connection's writer waits to gather small messages into one write.
//
// Strategies are pure: time is passed in, nothing here reads a clock, sleeps
// or owns a goroutine. The transport's writer drives them.
package coalescing
