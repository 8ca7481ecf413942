//! End-to-end tests of sync between SQLite devices through a PostgreSQL
//! server.
//!
//! Each test loads the release build of the extension into SQLite databases
//! through rusqlite (or the sqlite3 CLI) and syncs them with the server that
//! scripts/test-sync.sh starts. The script sets the environment that
//! [`common::env_var`] reads; without it every test fails. Each test makes
//! its own store, with a random store id, so the tests run in parallel
//! against one sync database.

// clippy.toml allows unwrap and expect in #[test] functions; the helpers
// these tests share state their expectations the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod clock;
mod common;
mod convergence;
mod inbox;
mod interruption;
mod model;
mod pairing;
mod property;
mod restore;
mod tampering;
mod tls;
mod zero_knowledge;
