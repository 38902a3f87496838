-- For the synchronous `mysql` claim strategy (the seed's design, kept as the baseline
-- that benchmarks compare against).

-- Set by warm, read by the mysql strategy's claims (the redis strategy keeps the
-- on-sale flag in Redis).
ALTER TABLE events ADD COLUMN on_sale TINYINT(1) NOT NULL DEFAULT 0;

-- Best available: the lowest-ordinal free seats of an event, by index.
CREATE INDEX seats_by_status ON seats (event_id, status, ordinal);

-- Seats each user holds in each event, one row per (event, user): locking it
-- serialises one user's concurrent claims, so the per-user limit holds.
CREATE TABLE user_holdings (
    event_id VARCHAR(64)  NOT NULL,
    user_id  VARCHAR(128) NOT NULL,
    seats    INT          NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Recorded claim outcomes per (event, user, Idempotency-Key), as the contract asks
-- (202/201, 409 and 422 are replayed for 24 h).
CREATE TABLE claim_idempotency (
    event_id    VARCHAR(64)  NOT NULL,
    user_id     VARCHAR(128) NOT NULL,
    idem_key    VARCHAR(255) NOT NULL,
    fingerprint CHAR(32)     NOT NULL,
    outcome     TEXT         NOT NULL,
    created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (event_id, user_id, idem_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
