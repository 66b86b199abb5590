// Package httpapi is the control plane's HTTP API over a [store.Store]:
// [Server] serves the routes docs/api.md documents, checks request
// signatures as its [AuthMode] says (off, soft or enforce), and announces
// every committed membership change on NATS. It sees only the Store
// contract, never a concrete backend, and keeps no state of its own, so
// that any number of nodes can serve the same store.
//
// [RateLimiter] slows a client that floods the API: per verified user and
// per source address, per node.
//
// # Concurrency
//
// Set a Server's exported fields before serving; it is safe for
// concurrent use afterwards. A RateLimiter is safe for concurrent use.
package httpapi
