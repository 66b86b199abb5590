package store

import "context"

// Counts is how many users, by status, and rooms a store holds: what an
// operator's gauges show (package storemetrics reads them at every
// scrape).
type Counts struct {
	ActiveUsers  int
	RevokedUsers int
	Rooms        int
}

// Counter is a backend that counts its users and rooms without reading
// them out: both the SQLite and the JetStream KV stores are. Counts is
// asked at every metrics scrape, so it must be cheap.
type Counter interface {
	Counts(ctx context.Context) (Counts, error)
}
