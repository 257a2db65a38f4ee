//! Databases for the node's store tests: a fresh SQLite file, and a fresh schema on the
//! PostgreSQL server `LEASEHOLD_TEST_POSTGRES` names (default
//! `postgres://postgres@127.0.0.1:5432/test`, the one `.ci/run` starts), so that runs and
//! tests never see each other's rows. `LEASEHOLD_TEST_POSTGRES=off` leaves PostgreSQL out
//! (for a machine without it; CI never sets it).

use std::path::Path;

use rand::Rng as _;
use sqlx::Connection as _;

pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL server to test against, or `None` when switched off.
pub fn postgres_server() -> Option<String> {
    match std::env::var("LEASEHOLD_TEST_POSTGRES") {
        Ok(v) if v == "off" => None,
        Ok(v) if !v.is_empty() => Some(v),
        _ => Some(DEFAULT_POSTGRES.to_owned()),
    }
}

/// A node database URL in a schema of its own on the test PostgreSQL server (created now).
/// Panics with the reason when the server does not answer: the PostgreSQL tests must not
/// pass by being skipped.
pub async fn postgres_schema(server: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let schema = format!("lh_test_{now}_{:08x}", rand::thread_rng().gen::<u32>());
    let mut conn = sqlx::PgConnection::connect(server).await.unwrap_or_else(|e| {
        panic!("the test PostgreSQL server {server} does not answer ({e}); start it, or set LEASEHOLD_TEST_POSTGRES=off to leave PostgreSQL out")
    });
    // Schemas of earlier runs (named by their creation time) go after an hour.
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT schema_name::text FROM information_schema.schemata WHERE schema_name LIKE 'lh\\_test\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for name in old {
        let made: u64 = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(u64::MAX);
        if made.saturating_add(3600) < now {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut conn)
                .await;
        }
    }
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating schema {schema} on {server}: {e}"));
    let _ = conn.close().await;
    let sep = if server.contains('?') { '&' } else { '?' };
    format!("{server}{sep}options[search_path]={schema}")
}

/// Every backend to run a store test on: `("sqlite", url)` in `dir`, and `("postgres", url)`
/// unless switched off.
pub async fn node_databases(dir: &Path) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        "sqlite",
        format!("sqlite://{}", dir.join("node.db").display()),
    )];
    if let Some(server) = postgres_server() {
        out.push(("postgres", postgres_schema(&server).await));
    }
    out
}
