//! This database's identity: the random id its migration made (table `deployment`).

use sqlx::mysql::MySqlPool;

use super::text;

/// The database's id, made once by its migration; copies of the database aside, no
/// other database has it.
pub(crate) async fn deployment_id(pool: &MySqlPool) -> Result<String, sqlx::Error> {
    let row = sqlx::query("SELECT id FROM deployment WHERE singleton = 1")
        .fetch_one(pool)
        .await?;
    text(&row, "id")
}
