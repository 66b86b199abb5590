-- Schema version 5: user names are unique regardless of case ("dave" and
-- "Dave" are one name; identity.FoldName, which is SQLite's ASCII lower()
-- for the ASCII names identity.CheckName allows).
--
-- A database made before this version may already hold names that differ
-- only in case. A plain unique index on lower(name) would fail this
-- migration, and with it every open of that database; renaming a user is
-- not possible either, since the name is signed in its identity binding.
-- So the older of each such group keeps the name, and every later one is
-- marked name_case_duplicate = 1: it stays registered and usable, findable
-- by its exact name or its user key (store.MatchName), and the unique index
-- covers every unmarked row. The oldest of a group stays in the index, so
-- no new user can take any case of its name; new rows are never marked.
--
--   * users_name_nocase is the rule: unique lower(name) among unmarked rows.
--   * users_name_lower serves lookups by name in any case, which must also
--     see the marked rows (to tell "Dave" from "dave").

ALTER TABLE users ADD COLUMN name_case_duplicate INTEGER CHECK (name_case_duplicate IS NULL OR name_case_duplicate = 1);

UPDATE users SET name_case_duplicate = 1
 WHERE EXISTS (SELECT 1 FROM users AS older
                WHERE lower(older.name) = lower(users.name) AND older.rowid < users.rowid);

CREATE UNIQUE INDEX users_name_nocase ON users (lower(name)) WHERE name_case_duplicate IS NULL;
CREATE INDEX users_name_lower ON users (lower(name));
