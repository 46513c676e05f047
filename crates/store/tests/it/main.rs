//! The store's integration tests: every port against real PostgreSQL and SQLite, each test on
//! a fresh database migrated through the real migrations (`store::test_support`).
//!
//! Every test is written once as `async fn name(backend)` and run on both backends by
//! `on_both!`, which makes `name::postgres` and `name::sqlite`. PostgreSQL comes from
//! `TEST_DATABASE_URL`; when it cannot be reached the PostgreSQL tests fail and say how to
//! start it.

// Helpers and test bodies live outside `#[test]` functions, where clippy's test exemption for
// `unwrap` does not reach; a failing unwrap is exactly how a test should fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agencies;
mod audit;
mod credentials;
mod dead_letters;
mod health;
mod inbox;
mod links;
mod locks;
mod observations;
mod runs;
mod support;
mod tenants;
mod window;
