package kvstore

import (
	"context"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// Counts counts the users by status and the rooms from the watch-fed
// cache (store.Counter), without a request to the buckets: for the
// metrics scrape, which asks every few seconds. Like every cached read,
// it may lag a change made through another node by the watch's delay.
func (s *jetstreamStore) Counts(context.Context) (store.Counts, error) {
	return s.cache.counts(), nil
}

// counts counts the cached users by status and the cached rooms.
func (c *kvCache) counts() store.Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := store.Counts{Rooms: len(c.rooms)}
	for _, cu := range c.users {
		switch cu.u.Status {
		case api.StatusActive:
			n.ActiveUsers++
		case api.StatusRevoked:
			n.RevokedUsers++
		}
	}
	return n
}
