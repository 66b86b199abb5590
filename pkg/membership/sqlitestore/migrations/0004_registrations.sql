-- Schema version 4: the admin-signed registration of each user added over
-- the API (identity.SignedRegistration: its exact bytes and signature).
-- Users seeded on the host have none.
ALTER TABLE users ADD COLUMN registration_body BLOB;
ALTER TABLE users ADD COLUMN registration_sig BLOB;
