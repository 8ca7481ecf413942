//! Hooks for the PostgreSQL benchmarks that wait for the PostgreSQL
//! extension: its value encryption functions next to pgcrypto, and its
//! encrypted tables next to plaintext tables.
//!
//! Neither feature exists in pg-ext yet, so each hook returns a placeholder
//! section that states this. To add one, replace the body of the hook with a
//! measurement in the style of `sqlite.rs`: both sides in this process,
//! interleaved by repetition, medians and ratios, and a [`Target`] for each
//! goal. `scripts/bench` has a matching hook where the extension would be
//! installed into the throwaway cluster.

use crate::Ctx;
use crate::error::Result;
use crate::report::Target;
use crate::sqlite::Section;
use crate::sync::Server;

/// Runs every PostgreSQL hook and joins their sections.
///
/// # Errors
///
/// None yet; a real measurement returns PostgreSQL's errors.
pub fn run(ctx: &Ctx, server: Option<&Server>) -> Result<Section> {
    let mut markdown = String::from("## PostgreSQL\n\n");
    let mut targets: Vec<Target> = Vec::new();
    for section in [
        value_functions_vs_pgcrypto(ctx, server)?,
        encrypted_tables_vs_plaintext(ctx, server)?,
    ] {
        markdown.push_str(&section.markdown);
        targets.extend(section.targets);
    }
    Ok(Section { markdown, targets })
}

/// HOOK(postgres-value-functions): the extension's encrypt and decrypt SQL
/// functions against pgcrypto (`pgp_sym_encrypt`/`pgp_sym_decrypt` and
/// `encrypt_iv`/`decrypt_iv` with aes), per value size (64 B, 256 B, 4 KiB,
/// 64 KiB), as values per second over a table of values in one statement.
fn value_functions_vs_pgcrypto(_ctx: &Ctx, _server: Option<&Server>) -> Result<Section> {
    // TODO: measure once pg-ext provides its encrypt and decrypt functions.
    Ok(Section {
        markdown: "### Value functions vs pgcrypto\n\nNot measured yet: the PostgreSQL \
                   extension's encrypt and decrypt functions are still being built.\n\n"
            .to_owned(),
        targets: Vec::new(),
    })
}

/// HOOK(postgres-encrypted-tables): inserts, primary-key lookups and a full
/// scan on an encrypted PostgreSQL table against a plaintext one, with the
/// same rows as the SQLite section (`workload::item`).
fn encrypted_tables_vs_plaintext(_ctx: &Ctx, _server: Option<&Server>) -> Result<Section> {
    // TODO: measure once pg-ext provides encrypted tables.
    Ok(Section {
        markdown: "### Encrypted tables vs plaintext tables\n\nNot measured yet: encrypted \
                   PostgreSQL tables are still being built.\n\n"
            .to_owned(),
        targets: Vec::new(),
    })
}
