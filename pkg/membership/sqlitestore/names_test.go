package sqlitestore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/sqlitestore"
	"github.com/enmanuel/unibus/pkg/membership/storetest"
)

// TestMigrateNamesDifferingInCase opens a database as a version-4
// membershipd left it, holding names that differ only in case (allowed
// then), and checks that migration 0005 opens it, keeps every user usable
// under its exact name and key, refuses a name asked in a case that fits
// several, and refuses any case of those names to a new user.
func TestMigrateNamesDifferingInCase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "unibus.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 4; v++ {
		files, err := filepath.Glob(fmt.Sprintf("migrations/%04d_*.sql", v))
		if err != nil || len(files) != 1 {
			t.Fatalf("migration %d: %v %v", v, files, err)
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("migration %s: %v", files[0], err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 1)`, v); err != nil {
			t.Fatal(err)
		}
	}
	// Dave, then dave, then DAVE: one name in three cases. erin is alone.
	users := []api.User{storetest.NewUser(t, "Dave"), storetest.NewUser(t, "dave"), storetest.NewUser(t, "DAVE"), storetest.NewUser(t, "erin")}
	for i, u := range users {
		if _, err := db.Exec(`INSERT INTO users (user_key, name, xkey, binding, role, status, created_at) VALUES (?, ?, ?, ?, 'member', 'active', ?)`,
			u.User, u.Name, u.XKey, u.Binding, i+1); err != nil {
			t.Fatalf("version-4 database: %v", err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := sqlitestore.Open(path)
	if err != nil {
		t.Fatalf("Open of a version-4 database with names differing in case: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	// Every user is still there, found by key and by its exact name.
	for _, u := range users {
		for _, q := range []string{u.User, u.Name} {
			got, err := s.GetUser(ctx, q)
			if err != nil || got.User != u.User {
				t.Fatalf("GetUser(%q) after the upgrade = %s, %v; want %s", q, got.Name, err, u.Name)
			}
		}
		if !s.IsAuthorized(u.User) {
			t.Fatalf("%s is not authorized after the upgrade", u.Name)
		}
	}
	// A case that is none of them fits three: refused, naming them.
	_, err = s.GetUser(ctx, "dAVE")
	if api.ErrorCode(err) != api.CodeConflict || !strings.Contains(err.Error(), `"Dave", "dave", "DAVE"`) {
		t.Fatalf(`GetUser("dAVE") = %v; want a conflict naming "Dave", "dave", "DAVE"`, err)
	}
	if got, err := s.GetUser(ctx, "ERIN"); err != nil || got.User != users[3].User {
		t.Fatalf(`GetUser("ERIN") = %s, %v; want erin`, got.Name, err)
	}
	// No new user takes any case of the name, nor of erin's.
	for _, name := range []string{"dAVE", "Erin"} {
		u := storetest.NewUser(t, name)
		err := s.CreateUser(ctx, u)
		if api.ErrorCode(err) != api.CodeConflict {
			t.Fatalf("CreateUser(%s) after the upgrade = %v; want conflict", name, err)
		}
	}
	list, err := s.ListUsers(ctx)
	if err != nil || len(list) != len(users) {
		t.Fatalf("ListUsers after the refused adds = %d users, %v; want %d", len(list), err, len(users))
	}

	// The rule holds in the schema itself, for any writer: the oldest of
	// the group stays in the unique index; only the later ones are marked.
	raw := teststore.RawSQLite(t, path)
	var marked []string
	rows, err := raw.Query(`SELECT name FROM users WHERE name_case_duplicate = 1 ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		marked = append(marked, n)
	}
	rows.Close()
	if strings.Join(marked, ",") != "dave,DAVE" {
		t.Fatalf("marked duplicates = %q; want dave,DAVE", marked)
	}
	other := storetest.NewUser(t, "DaVe")
	if _, err := raw.Exec(`INSERT INTO users (user_key, name, xkey, binding, role, status, created_at) VALUES (?, ?, ?, ?, 'member', 'active', 9)`,
		other.User, other.Name, other.XKey, other.Binding); err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Fatalf("raw INSERT of DaVe = %v; want a UNIQUE constraint failure", err)
	}

	// Reopening migrates nothing again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := teststore.SQLite(t, path)
	if got, err := s2.GetUser(ctx, "dave"); err != nil || got.User != users[1].User {
		t.Fatalf("GetUser(dave) after a reopen = %s, %v", got.Name, err)
	}
}

// TestNameUniqueInSchema: on a new database, a writer other than the
// store cannot add a name in another case either.
func TestNameUniqueInSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unibus.db")
	s := teststore.SQLite(t, path)
	dave := storetest.NewUser(t, "dave")
	storetest.CreateUsers(t, s, dave)
	raw := teststore.RawSQLite(t, path)
	for _, name := range []string{"Dave", "DAVE"} {
		u := storetest.NewUser(t, name)
		_, err := raw.Exec(`INSERT INTO users (user_key, name, xkey, binding, role, status, created_at) VALUES (?, ?, ?, ?, 'member', 'active', 1)`,
			u.User, u.Name, u.XKey, u.Binding)
		if err == nil || !strings.Contains(err.Error(), "UNIQUE") {
			t.Fatalf("raw INSERT of %s = %v; want a UNIQUE constraint failure", strconv.Quote(name), err)
		}
	}
}
