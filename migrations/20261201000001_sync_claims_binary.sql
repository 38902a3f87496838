-- The `mysql` claim strategy's user ids and idempotency keys compare byte for byte,
-- trailing spaces included, and its idempotency records can be found by age.
--
-- utf8mb4_bin is a PAD SPACE collation, on MariaDB and on MySQL 8 alike: 'alice' and
-- 'alice ' compare equal, so two users (a JWT's `sub` may end with a space) shared one
-- per-user tally and one set of idempotency records. The NO PAD binary collations
-- differ by server (utf8mb4_nopad_bin on MariaDB, utf8mb4_0900_bin on MySQL 8, and
-- neither server knows the other's), so these columns become VARBINARY, whose
-- comparisons are exact on both. Seat ids keep utf8mb4_bin: the API refuses a seat id
-- that ends with a space instead. Bytes are what the rows held before, so no row
-- changes.
--
-- VARBINARY(512): a user id is up to 128 characters of up to 4 bytes each. Idempotency
-- keys are visible ASCII, one byte per character.

ALTER TABLE user_holdings MODIFY user_id VARBINARY(512) NOT NULL;

-- claim_idempotency_by_age: the purge of records past their 24 h walks it oldest first.
ALTER TABLE claim_idempotency
    MODIFY user_id  VARBINARY(512) NOT NULL,
    MODIFY idem_key VARBINARY(255) NOT NULL,
    ADD KEY claim_idempotency_by_age (created_at);
