package kvstore

import (
	"context"
	"encoding/json"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// PutUserAsBefore writes u straight into the users bucket of s the way a
// kvstore from before case-folded names did: its record under u.<key> and
// its name under n.<name> in the case it was registered. Nothing is
// checked, so names differing only in case can be written, as they could
// then. For tests only.
func PutUserAsBefore(ctx context.Context, s store.Store, u api.User) error {
	js := s.(*jetstreamStore)
	data, err := json.Marshal(toKVUser(u))
	if err != nil {
		return err
	}
	if _, err := js.users.Put(ctx, "n."+kvToken(u.Name), []byte(u.User)); err != nil {
		return err
	}
	_, err = js.users.Put(ctx, userKey(u.User), data)
	return err
}
