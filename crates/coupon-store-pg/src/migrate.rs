//! Schema migrations, embedded in the binary from the workspace's `migrations/` directory.
//!
//! They run as an explicit release step (`api-server migrate`, the Kubernetes migrate Job, the
//! dev and test scripts), never implicitly when a service starts: with N replicas starting at
//! once, an implicit migration would race and would run with the application's privileges.

use diesel::migration::MigrationVersion;
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};

use crate::tls::{self, PgTls};

/// The schema, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// A migration step failed; the message names the migration where diesel reports it.
#[derive(Debug, thiserror::Error)]
#[error("migration failed: {0}")]
pub struct MigrateError(String);

/// Applies every pending migration; returns the versions applied, oldest first.
///
/// Needs the multi-threaded tokio runtime (diesel's migration harness is synchronous and runs
/// under `block_in_place`).
///
/// # Errors
/// When the database is unreachable or a migration fails (that migration is rolled back).
pub async fn run_pending(connection_string: &SecretString, tls: &PgTls) -> Result<Vec<String>, MigrateError> {
    let mut harness = harness(connection_string, tls).await?;
    let applied = harness.run_pending_migrations(MIGRATIONS).map_err(|e| MigrateError(e.to_string()))?;
    Ok(versions(applied))
}

/// Reverts every applied migration, newest first; returns the versions reverted.
///
/// # Errors
/// When the database is unreachable or a `down.sql` fails.
pub async fn revert_all(connection_string: &SecretString, tls: &PgTls) -> Result<Vec<String>, MigrateError> {
    let mut harness = harness(connection_string, tls).await?;
    let reverted = harness.revert_all_migrations(MIGRATIONS).map_err(|e| MigrateError(e.to_string()))?;
    Ok(versions(reverted))
}

/// Versions not yet applied.
///
/// # Errors
/// When the database is unreachable.
pub async fn pending(connection_string: &SecretString, tls: &PgTls) -> Result<Vec<String>, MigrateError> {
    let mut harness = harness(connection_string, tls).await?;
    let pending = harness.pending_migrations(MIGRATIONS).map_err(|e| MigrateError(e.to_string()))?;
    Ok(pending.iter().map(|m| m.name().version().to_string()).collect())
}

async fn harness(
    connection_string: &SecretString,
    tls: &PgTls,
) -> Result<AsyncMigrationHarness<AsyncPgConnection>, MigrateError> {
    let connector = tls.connector().map_err(MigrateError)?;
    let conn = tls::connect(connection_string.expose_secret(), &connector)
        .await
        .map_err(|e| MigrateError(e.to_string()))?;
    Ok(AsyncMigrationHarness::new(conn))
}

fn versions(list: Vec<MigrationVersion<'_>>) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}
