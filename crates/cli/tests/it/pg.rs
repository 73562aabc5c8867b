//! PostgreSQL for the integration tests: a fresh, empty database per test on the server
//! `scripts/test.sh` starts (`WARRANT_TEST_PG_URL`).

#![allow(dead_code)]

use sqlx::Connection;

/// The test server's URL; fails with a clear message when the suite was not started
/// through `scripts/test.sh`.
pub fn server_url() -> String {
    std::env::var("WARRANT_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("WARRANT_TEST_PG_URL is not set: run the tests with `bash scripts/test.sh`, which starts PostgreSQL")
    })
}

/// Creates an empty database on the test server and returns its URL.
pub async fn fresh_database() -> String {
    let admin = server_url();
    let name = format!("wit_{}", uuid_like());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL at {admin}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let _ = conn.close().await;
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("URL with a database");
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}_{:x}_{n}", nanos, std::process::id())
}
