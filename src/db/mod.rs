//! MySQL, the system of record: connection, migrations, and the queries the API, the
//! reconciler and the admin operations run. Runtime-checked `sqlx::query` throughout,
//! so a fresh checkout builds without a database.

pub mod bookings;
pub mod deployment;
pub mod events;
pub mod listing;
pub mod retry;
pub mod sync_claim;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::MySql;
use std::time::Duration;

/// Creates the database if it is missing, connects a pool and applies the migrations.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> anyhow::Result<MySqlPool> {
    let pool = lazy_pool(url, max_connections)?;
    prepare(url, &pool).await?;
    Ok(pool)
}

/// A pool that connects on first use, so the gateway can start while MySQL is down.
pub fn lazy_pool(url: &str, max_connections: u32) -> anyhow::Result<MySqlPool> {
    MySqlPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(url)
        .context("invalid SEATGATE_DATABASE_URL")
}

/// Creates the database if it is missing and applies the migrations (idempotent).
pub(crate) async fn prepare(url: &str, pool: &MySqlPool) -> anyhow::Result<()> {
    if !MySql::database_exists(url)
        .await
        .context("cannot reach MySQL at SEATGATE_DATABASE_URL")?
    {
        MySql::create_database(url)
            .await
            .context("cannot create the database named in SEATGATE_DATABASE_URL")?;
    }
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .context("cannot apply migrations")?;
    Ok(())
}

/// True for errors worth retrying: the server or the network failed, not the request.
///
/// Connection trouble, pool exhaustion, deadlocks (1213), lock wait timeouts (1205),
/// a read-only or shutting-down server (1290, 1836, 1053), a killed connection (1927)
/// and lost connections (2006, 2013) pass with time; constraint violations and the like
/// do not.
pub(crate) fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            matches!(
                code,
                Some(1053 | 1205 | 1213 | 1290 | 1836 | 1927 | 2006 | 2013)
            )
        }
        _ => false,
    }
}

/// True when `err` is a duplicate-key violation (1062).
pub(crate) fn is_duplicate_key(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|e| e.number() == 1062),
        _ => false,
    }
}

/// A text column as a `String`.
///
/// The id columns use the binary collation `utf8mb4_bin` (ids compare byte for byte),
/// and MariaDB reports such columns with the BINARY flag, which sqlx will not decode
/// as `String`; bytes decode from either, and are checked to be UTF-8 here.
pub fn text(row: &sqlx::mysql::MySqlRow, column: &str) -> Result<String, sqlx::Error> {
    use sqlx::Row;
    let bytes: Vec<u8> = row.try_get(column)?;
    String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

/// A nullable text column (see [`text`]).
pub fn opt_text(row: &sqlx::mysql::MySqlRow, column: &str) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Row;
    let bytes: Option<Vec<u8>> = row.try_get(column)?;
    bytes
        .map(|b| {
            String::from_utf8(b).map_err(|e| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: Box::new(e),
            })
        })
        .transpose()
}

/// `?, ?, ?` for an `IN (...)` list of `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}
