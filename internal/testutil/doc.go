// Package testutil is the home of the helpers that tests share: none of
// its sub-packages ships in a binary. Each starts or makes one real thing
// for a test and cleans it up with t.Cleanup:
//
//   - [github.com/enmanuel/unibus/internal/testutil/testnats]: an embedded
//     NATS server with JetStream on a random port, or a cluster of them;
//   - [github.com/enmanuel/unibus/internal/testutil/teststore]: the
//     control-plane store on SQLite or on JetStream KV;
//   - [github.com/enmanuel/unibus/internal/testutil/testbus]: a whole
//     deployment (NATS, the store, the API) and identities on it;
//   - [github.com/enmanuel/unibus/internal/testutil/testcerts]: throwaway
//     certificate authorities and certificates;
//   - [github.com/enmanuel/unibus/internal/testutil/testio]: a buffer safe to
//     watch while a process writes to it;
//   - [github.com/enmanuel/unibus/internal/testutil/testnet]: loopback
//     addresses that refuse connections or never answer, and free ports.
package testutil
