//! Loadable SQLite extension.
