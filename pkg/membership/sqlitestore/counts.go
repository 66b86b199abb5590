package sqlitestore

import (
	"context"

	"github.com/enmanuel/unibus/pkg/membership/store"
)

// Counts counts the users by status and the rooms (store.Counter): one
// statement of three aggregates, prepared once and read in one implicit
// read transaction, which takes no write lock. For the metrics scrape,
// which asks every few seconds.
func (s *sqliteStore) Counts(ctx context.Context) (store.Counts, error) {
	var c store.Counts
	err := s.reads.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM users WHERE status = 'active'),
		(SELECT COUNT(*) FROM users WHERE status = 'revoked'),
		(SELECT COUNT(*) FROM rooms)`).Scan(&c.ActiveUsers, &c.RevokedUsers, &c.Rooms)
	if err != nil {
		return store.Counts{}, s.fail("count users and rooms", err)
	}
	return c, nil
}
