// Package httpapi is the control plane's HTTP API over a [store.Store]:
// [Server] serves the routes docs/api.md documents, checks request
// signatures as its [AuthMode] says (off, soft or enforce), and announces
// every committed membership change on NATS. It sees only the Store
// contract, never a concrete backend, and keeps no state of its own, so
// that any number of nodes can serve the same store.
//
// [RateLimiter] slows a client that floods the API: per source address in
// front of the Server, and per user in it ([Server.UserLimit]), counting
// only the requests whose signature verified, per node.
//
// # Bodies
//
// Nothing costly happens before a call is authenticated as far as it can
// be without its body: the signature header's shape, its time window, the
// signature over the method, the request URI and the body digest it
// claims, the user's rate limit and the user (known, active) are checked
// first, and a call refused then is answered without reading its body.
// A body is then read under a moving read deadline ([Server.BodyTimeout],
// then [MinBodyRate]), and a JSON body, held in memory until its digest is
// compared with the signed one, only while fewer than
// [Server.MaxUnverifiedBodies] are (else 503 with a Retry-After). Blob
// uploads stream to the blob store, which checks their digest as it writes.
//
// # Concurrency
//
// Set a Server's exported fields before serving; it is safe for
// concurrent use afterwards. A RateLimiter is safe for concurrent use.
package httpapi
