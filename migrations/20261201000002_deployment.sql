-- Who this database is. One Redis namespace belongs to one database: the first gateway
-- on a namespace records this id in Redis (`<namespace>seatgate:owner`), and a gateway
-- of any other database refuses to start on that namespace (see `src/deployment.rs`).
-- Exactly one row, made here with a random id.
CREATE TABLE deployment (
    singleton  TINYINT      NOT NULL DEFAULT 1,
    id         CHAR(36)     NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (singleton),
    CONSTRAINT deployment_one_row CHECK (singleton = 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT INTO deployment (singleton, id) VALUES (1, UUID());
