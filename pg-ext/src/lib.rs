//! PostgreSQL extension for Persist, built with pgrx.
//!
//! `CREATE EXTENSION persist` creates the schema `persist` and the SQL
//! functions in it, and `DROP EXTENSION persist` drops both.
//!
//! Install and test it with cargo-pgrx, as `scripts/test-pg.sh` does, because
//! cargo-pgrx writes the extension SQL from these Rust definitions. Even a
//! plain `cargo build` of this crate needs `cargo pgrx init` first, which
//! records the `pg_config` whose headers pgrx compiles against.

// No `name, version` arguments: only PostgreSQL 18 reads them, and in pgrx
// 0.18.1 the `version` argument overwrites the module name with the version.
::pgrx::pg_module_magic!();

/// SQL functions in the schema `persist`.
///
/// pgrx emits `CREATE SCHEMA IF NOT EXISTS persist` in the extension script,
/// so the schema is a member of the extension and `DROP EXTENSION` drops it.
#[pgrx::pg_schema]
mod persist {
    use pgrx::prelude::*;

    /// Returns the version of the `persist-pg` crate that built the loaded
    /// library, such as `0.1.0`.
    ///
    /// Declared STABLE, not IMMUTABLE, because Postgres may fold an IMMUTABLE
    /// result into stored plans and indexes, and installing a newer library
    /// changes the result.
    #[pg_extern(stable, strict, parallel_safe)]
    fn version() -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_returns_crate_version() -> Result<(), spi::Error> {
        let version = Spi::get_one::<String>("SELECT persist.version()")?;
        assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        Ok(())
    }

    #[pg_test]
    fn version_declared_stable_strict_parallel_safe() -> Result<(), spi::Error> {
        let attributes = Spi::get_three::<String, bool, String>(
            "SELECT provolatile::text, proisstrict, proparallel::text
             FROM pg_proc WHERE oid = 'persist.version()'::regprocedure",
        )?;
        let (volatility, strict, parallel) = attributes;
        assert_eq!(volatility.as_deref(), Some("s"), "provolatile");
        assert_eq!(strict, Some(true), "proisstrict");
        assert_eq!(parallel.as_deref(), Some("s"), "proparallel");
        Ok(())
    }
}

/// Hooks that `cargo pgrx test` calls before it starts the test server.
///
/// pgrx requires this module at the crate root under exactly this name.
#[cfg(test)]
pub mod pg_test {
    /// Runs one-off setup when the test framework starts. Persist needs none.
    pub fn setup(_options: Vec<&str>) {}

    /// Returns the `postgresql.conf` settings that the test server needs.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        Vec::new()
    }
}
