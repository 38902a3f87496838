//! Runtime settings, read from `SEATGATE_*` environment variables or `serve` flags
//! (see `cli`). The names are a public interface (README.md, "Configuration"): renaming
//! one breaks deployments.

use std::fmt;
use std::time::Duration;

/// A secret string whose `Debug` and `Display` never show it, so it cannot leak into
/// logs through a `{:?}` of the settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How `POST /v1/events/{id}/bookings` books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClaimStrategy {
    /// Claim atomically in Redis (202 pending); the reconciler persists to MySQL.
    #[default]
    Redis,
    /// The seed's synchronous `SELECT … FOR UPDATE` booking in MySQL (201 confirmed),
    /// kept as the baseline benchmarks compare against.
    Mysql,
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: String,
    pub redis_url: String,
    pub database_url: String,
    /// Prefix of every Redis key (empty by default); lets deployments or tests share
    /// one Redis.
    pub redis_namespace: String,
    /// Bound on every Redis call on the request path.
    pub redis_timeout: Duration,
    pub admin_token: Secret,
    pub jwt_secret: Secret,
    pub claim_strategy: ClaimStrategy,
    /// Longest any request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Claims in flight at once; beyond it, 503 `overloaded` at once.
    pub max_inflight_claims: usize,
    /// Live seat map streams open at once; beyond it, 503 `overloaded`.
    pub max_live_streams: usize,
    /// Live seat map streams one client address may hold at once.
    pub max_live_streams_per_client: usize,
    /// Claims per second one user may make on average in one event (0: no limit),
    /// enforced in Redis by the claim script, so across every gateway (the `mysql`
    /// claim strategy has no rate limit).
    pub user_rate: f64,
    /// Claims one user may make in a burst.
    pub user_burst: u32,
    /// Run the reconciler in the gateway process.
    pub reconciler: bool,
    pub db_max_connections: u32,
    /// A claim still not persisted this long after it was made is rejected
    /// (`deadline_exceeded`) once MySQL can record the rejection.
    pub claim_deadline: Duration,
    /// The listener's backlog, connection cap and per-connection timeouts.
    pub server: crate::server::ServerLimits,
    /// Oldest a served public seat map may be (one store read per event per interval,
    /// however many readers).
    pub seat_map_max_age: Duration,
    /// What a claim needs of Redis's replication and memory policy.
    pub durability: Durability,
}

/// What seatgate asks of Redis before it acknowledges a claim (README.md, "What
/// survives what").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must hold a claim before its 202 (`WAIT`); 0: the primary alone.
    pub min_replicas: u32,
    /// How long a claim waits for them before it is answered 503 `unavailable`.
    pub replication_timeout: Duration,
    /// Run on a Redis whose `maxmemory-policy` evicts keys (`SEATGATE_ALLOW_EVICTION`).
    pub allow_eviction: bool,
}

impl Default for Durability {
    fn default() -> Self {
        Self {
            min_replicas: 0,
            replication_timeout: Duration::from_millis(500),
            allow_eviction: false,
        }
    }
}

/// Shortest admin token accepted, in characters.
pub(crate) const ADMIN_TOKEN_MIN_CHARS: usize = 16;
/// Shortest JWT secret accepted, in bytes: HS256 keys shorter than the hash's 32 bytes
/// are open to brute force (RFC 7518, section 3.2).
pub(crate) const JWT_SECRET_MIN_BYTES: usize = 32;

impl Settings {
    /// Refuses secrets too weak to guard a drop, naming the variable to fix (and never
    /// showing the value).
    pub(crate) fn check_secrets(&self) -> Result<(), String> {
        let admin = self.admin_token.expose().chars().count();
        if admin < ADMIN_TOKEN_MIN_CHARS {
            return Err(format!(
                "SEATGATE_ADMIN_TOKEN is too short ({admin} characters): use at least \
                 {ADMIN_TOKEN_MIN_CHARS} random characters (e.g. `openssl rand -hex 16`)"
            ));
        }
        let jwt = self.jwt_secret.expose().len();
        if jwt < JWT_SECRET_MIN_BYTES {
            return Err(format!(
                "SEATGATE_JWT_SECRET is too short ({jwt} bytes): HS256 needs at least \
                 {JWT_SECRET_MIN_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(())
    }

    /// Settings for local use and tests: defaults everywhere, the given secrets.
    pub fn local(admin_token: &str, jwt_secret: &str) -> Self {
        Self {
            http_addr: "127.0.0.1:8080".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            database_url: "mysql://root@127.0.0.1:3306/seatgate".into(),
            redis_namespace: String::new(),
            redis_timeout: Duration::from_millis(1000),
            admin_token: Secret::new(admin_token),
            jwt_secret: Secret::new(jwt_secret),
            claim_strategy: ClaimStrategy::Redis,
            request_timeout: Duration::from_secs(30),
            max_inflight_claims: 10_000,
            max_live_streams: 10_000,
            max_live_streams_per_client: 256,
            user_rate: 5.0,
            user_burst: 10,
            reconciler: true,
            db_max_connections: 32,
            claim_deadline: Duration::from_secs(300),
            server: crate::server::ServerLimits::default(),
            seat_map_max_age: crate::live::snapshot::SNAPSHOT_MAX_AGE,
            durability: Durability::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_refused_by_name_without_showing_them() {
        let strong_admin = "a".repeat(ADMIN_TOKEN_MIN_CHARS);
        let strong_jwt = "j".repeat(JWT_SECRET_MIN_BYTES);
        assert_eq!(
            Settings::local(&strong_admin, &strong_jwt).check_secrets(),
            Ok(())
        );

        let err = Settings::local("short-admin", &strong_jwt)
            .check_secrets()
            .unwrap_err();
        assert!(err.starts_with("SEATGATE_ADMIN_TOKEN"), "{err}");
        assert!(!err.contains("short-admin"), "{err}");

        let weak = "jwt-secret-of-31-bytes-xxxxxxxx";
        assert_eq!(weak.len(), 31);
        let err = Settings::local(&strong_admin, weak)
            .check_secrets()
            .unwrap_err();
        assert!(err.starts_with("SEATGATE_JWT_SECRET"), "{err}");
        assert!(!err.contains(weak), "{err}");
    }
}
