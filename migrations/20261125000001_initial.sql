-- seatgate's system of record. Ids compare byte for byte (utf8mb4_bin): "A1" and "a1"
-- are two seats. Works on MySQL 8 and MariaDB 10.6+.

CREATE TABLE events (
    id             VARCHAR(64)  NOT NULL,
    name           VARCHAR(200) NOT NULL,
    per_user_limit INT          NOT NULL,
    seats_total    INT          NOT NULL,
    created_at     TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per seat. `ordinal` is the best-available order given at creation.
-- A seat is booked exactly when booking_id names a confirmed booking.
CREATE TABLE seats (
    event_id   VARCHAR(64) NOT NULL,
    seat_id    VARCHAR(32) NOT NULL,
    ordinal    INT         NOT NULL,
    status     VARCHAR(16) NOT NULL DEFAULT 'available',
    booking_id CHAR(36)    NULL,
    PRIMARY KEY (event_id, seat_id),
    UNIQUE KEY seats_by_ordinal (event_id, ordinal),
    KEY seats_by_booking (booking_id),
    CONSTRAINT seats_event FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT seats_status CHECK (status IN ('available', 'booked'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Bookings that reached MySQL: confirmed ones, cancelled ones (including tombstones of
-- claims cancelled while still pending, so a late reconciler never books them), and
-- rejected ones where the reconciler recorded the rejection.
-- `seats` is the JSON array of the booking's seat ids, kept after a cancellation.
-- `idempotency_key` / `request_fp` serve the synchronous mysql claim strategy.
CREATE TABLE bookings (
    id              CHAR(36)     NOT NULL,
    event_id        VARCHAR(64)  NOT NULL,
    user_id         VARCHAR(128) NOT NULL,
    status          VARCHAR(16)  NOT NULL,
    seats           TEXT         NOT NULL,
    reason          VARCHAR(64)  NULL,
    idempotency_key VARCHAR(255) NULL,
    request_fp      CHAR(64)     NULL,
    created_at      TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at      TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY bookings_by_user (event_id, user_id),
    UNIQUE KEY bookings_by_idempotency_key (event_id, user_id, idempotency_key),
    CONSTRAINT bookings_event FOREIGN KEY (event_id) REFERENCES events (id),
    CONSTRAINT bookings_status CHECK (status IN ('confirmed', 'cancelled', 'rejected'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
