// Package limit counts the bytes a node holds against nested limits that
// can change at run time: a Budget per direction, an Account per peer under
// it and one per connection under that. Taking bytes from an account takes
// them from every account above it, all or nothing, so the node's limit and
// each peer's hold however many connections there are.
//
// Waiting for room is first come, first served and costs nothing while it
// waits: a waiter is granted by whoever frees the room (Release, SetLimit,
// another waiter giving up), never woken to retry. A waiter can be a
// goroutine (Wait) or a callback (WaitFunc), for a reader that must keep
// reading while a large message waits for its room.
//
// While nothing waits, taking bytes is lock-free: a compare-and-swap on
// each account from the bottom up, undone if a parent is full. The lock
// orders the waiters alone.
package limit
