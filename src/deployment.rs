//! One Redis namespace belongs to one MySQL database.
//!
//! Two deployments with different databases on one namespace (staging and production
//! pointed at the same Redis by mistake) would share the event registry, and each
//! reconciler would settle the other's claims into its own database, where they are
//! rejected. So the first gateway on a namespace records its database as the owner
//! (`<namespace>seatgate:owner`, set once), and a gateway or reconciler of any other
//! database refuses to start there. A database is known by the random id its
//! migration made (two servers' `seatgate` databases differ), and named as
//! `host:port/database`, never with credentials, in the message.
//!
//! The check runs at start when both stores answer. A store that is down then does not
//! stop the start (the gateway waits for it), so the check is skipped with a warning;
//! the reconciler settles only events its own database has either way (see
//! `reconciler`).

use sqlx::mysql::{MySqlConnectOptions, MySqlPool};
use std::str::FromStr;

use crate::claims::RedisStore;
use crate::db;

/// The namespace already belongs to another database.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Redis namespace {namespace:?} belongs to the database {owner}, not to {ours} \
     (this deployment's database, or one of the same name made since): give each \
     deployment its own SEATGATE_REDIS_NAMESPACE; if that database is gone for good, \
     delete the Redis key {key} to hand the namespace over"
)]
pub(crate) struct NamespaceTaken {
    pub namespace: String,
    /// The Redis key that records the owner.
    pub key: String,
    /// `host:port/database` of the owner, as its gateway recorded it.
    pub owner: String,
    /// `host:port/database` of this deployment.
    pub ours: String,
}

/// Makes this deployment's database the owner of the Redis namespace if it has none,
/// and fails with [`NamespaceTaken`] if another database owns it. If either store
/// cannot answer now, warns and lets the start go on.
pub(crate) async fn claim_namespace(
    redis: &RedisStore,
    pool: &MySqlPool,
    database_url: &str,
) -> Result<(), NamespaceTaken> {
    let ours = describe(database_url);
    let id = match db::deployment::deployment_id(pool).await {
        Ok(id) => id,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read this database's id; the Redis namespace's owner is not checked");
            return Ok(());
        }
    };
    let owner = match redis.claim_namespace(&format!("{id} {ours}")).await {
        Ok(owner) => owner,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the Redis namespace's owner; it is not checked");
            return Ok(());
        }
    };
    let (owner_id, owner_name) = owner.split_once(' ').unwrap_or((&owner, "(unnamed)"));
    if owner_id == id {
        return Ok(());
    }
    Err(NamespaceTaken {
        namespace: redis.namespace().to_owned(),
        key: crate::claims::keys::namespace_owner(redis.namespace()),
        owner: owner_name.to_owned(),
        ours,
    })
}

/// `host:port/database` (or `socket/database`) of a MySQL URL: no user, no password.
pub fn describe(database_url: &str) -> String {
    let Ok(options) = MySqlConnectOptions::from_str(database_url) else {
        return "(an unreadable database URL)".to_owned();
    };
    let place = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    format!("{place}/{}", options.get_database().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_named_without_its_credentials() {
        assert_eq!(
            describe("mysql://root:hunter2@db.internal:3307/seatgate"),
            "db.internal:3307/seatgate"
        );
        assert_eq!(
            describe("mysql://root@127.0.0.1/seatgate"),
            "127.0.0.1:3306/seatgate"
        );
    }
}
