-- Holds and checkout (issue 13).
--
-- An event may hold each persisted claim for `hold_seconds` while its buyer checks
-- out; a hold may be extended up to `hold_max_seconds` after the claim. 0: no holds (a
-- persisted claim is confirmed at once, as before).
ALTER TABLE events
    ADD COLUMN hold_seconds     INT NOT NULL DEFAULT 0,
    ADD COLUMN hold_max_seconds INT NOT NULL DEFAULT 0;

-- A booking may be `held` (persisted, waiting for its checkout until `expires_ms`) and
-- `expired` (not checked out in time; its seats were given back). Instants are
-- milliseconds since the Unix epoch, as the claim stamps them: no time zone enters.
-- `claimed_ms` is the claim's time, from which `expires_ms` and the extension cap
-- count. bookings_by_expiry: the expirer's scan of due holds.
ALTER TABLE bookings
    DROP CONSTRAINT bookings_status,
    ADD CONSTRAINT bookings_status
        CHECK (status IN ('held', 'confirmed', 'cancelled', 'rejected', 'expired')),
    ADD COLUMN claimed_ms        BIGINT       NULL,
    ADD COLUMN expires_ms        BIGINT       NULL,
    ADD COLUMN payment_reference VARCHAR(200) NULL,
    ADD KEY bookings_by_expiry (status, expires_ms);

-- A held booking's seats are `held` with its booking_id.
ALTER TABLE seats
    DROP CONSTRAINT seats_status,
    ADD CONSTRAINT seats_status CHECK (status IN ('available', 'held', 'booked'));

-- Attendees, one per seat of a checked-out booking. Personal data: only here (never in
-- Redis, never in logs), shown to the booking's owner.
CREATE TABLE attendees (
    booking_id CHAR(36)     NOT NULL,
    seat_id    VARCHAR(32)  NOT NULL,
    name       VARCHAR(200) NOT NULL,
    email      VARCHAR(254) NOT NULL,
    PRIMARY KEY (booking_id, seat_id),
    CONSTRAINT attendees_booking FOREIGN KEY (booking_id) REFERENCES bookings (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
