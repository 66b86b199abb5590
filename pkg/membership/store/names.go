package store

import (
	"strconv"
	"strings"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
)

// User names are unique regardless of case (identity.FoldName): "dave"
// cannot be registered while "Dave" is, and a lookup by name finds a user
// whatever the case of the name asked. A store made before that rule may
// hold names that differ only in case; the backends keep them (a user's
// name is signed in its identity and cannot be changed), and MatchName
// says which of them a name asks for.

// NameTaken is CreateUser's conflict for a name that holder (the name as
// registered) already has, in this case or another.
func NameTaken(name, holder string) error {
	if name == holder {
		return api.Errorf(api.CodeConflict, "user name %q is taken: choose another name for this identity", name)
	}
	return api.Errorf(api.CodeConflict, "user name %q is taken by %q (names are unique regardless of case): choose another name for this identity", name, holder)
}

// MatchName returns the user that name asks for among candidates, the
// users whose names equal name regardless of case, oldest first: the one
// with exactly that name, else the only one. not_found if there is none;
// conflict if several differ from name only in case, which only a store
// made before names were unique regardless of case can hold.
func MatchName(name string, candidates []api.User) (api.User, error) {
	var match []api.User
	for _, u := range candidates {
		if u.Name == name {
			return u, nil
		}
		if identity.FoldName(u.Name) == identity.FoldName(name) {
			match = append(match, u)
		}
	}
	switch len(match) {
	case 0:
		return api.User{}, UserNotFound(name)
	case 1:
		return match[0], nil
	}
	names := make([]string, len(match))
	for i, u := range match {
		names[i] = strconv.Quote(u.Name)
	}
	return api.User{}, api.Errorf(api.CodeConflict, "user name %q matches %d users registered before names were unique regardless of case (%s): name one exactly as registered, or by its user key",
		name, len(match), strings.Join(names, ", "))
}
