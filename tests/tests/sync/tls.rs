//! TLS to the sync server on 127.0.0.1, with the libpq sslmodes.
//!
//! scripts/test-sync.sh starts two TLS servers whose certificates come from
//! a test CA: one names localhost and 127.0.0.1, the other only 127.0.0.1.
//! Both reject TCP connections without TLS, so a sync that succeeds has
//! used TLS.

use crate::common::{Device, env_var};

const DECLARATION: &str =
    "CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)";

/// Builds a conninfo for the TLS server on port variable `port_var`, with
/// `host` (and hostaddr=127.0.0.1 when `host` is a name) and `settings`.
fn tls_conninfo(port_var: &str, host: &str, settings: &str) -> String {
    let address = if host == "127.0.0.1" {
        String::new()
    } else {
        " hostaddr=127.0.0.1".to_owned()
    };
    format!(
        "host={host}{address} port={} user=postgres dbname=sync connect_timeout=10 {settings}",
        env_var(port_var)
    )
}

fn verify(mode: &str, ca_var: &str) -> String {
    format!("sslmode={mode} sslrootcert={}", env_var(ca_var))
}

/// Creates a device of a new store with two unsynced rows. Each server gets
/// its own store, because a device does not push again to a second server
/// what it pushed to the first.
fn device(dir: &tempfile::TempDir, label: &str) -> Device {
    let device = Device::create(dir.path(), label);
    device.exec(DECLARATION);
    device.exec("INSERT INTO notes VALUES (1, 'one'), (2, 'two')");
    device
}

/// Asserts that the first sync of a `device` pushes its two rows.
fn assert_first_sync(device: &Device, conninfo: &str) {
    let summary = device
        .try_sync(conninfo)
        .unwrap_or_else(|err| panic!("sync over {conninfo} failed: {err}"));
    assert_eq!(
        (summary.pushed, summary.accepted, summary.pulled),
        (2, 2, 2),
        "{conninfo}: {summary:?}"
    );
}

/// Asserts that the sync fails to connect and pushes nothing, and returns
/// the message.
fn assert_rejected(device: &Device, conninfo: &str) -> String {
    let err = device
        .try_sync(conninfo)
        .expect_err(&format!("sync over {conninfo} succeeded"));
    println!("{conninfo}\n  -> {err}");
    assert!(
        err.contains("persist_sync: cannot connect to the sync server"),
        "{err}"
    );
    assert_eq!(device.unpushed("notes"), 2, "a refused sync pushed rows");
    err
}

/// Asserts that `err`, lowercased, contains one of `causes`.
fn assert_names_cause(err: &str, causes: &[&str], expected_cause: &str) {
    let lower = err.to_lowercase();
    assert!(
        causes.iter().any(|cause| lower.contains(cause)),
        "the error should name {expected_cause} (one of {causes:?}): {err}"
    );
}

#[test]
fn verify_full_with_test_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = device(&dir, "A");
    let b = Device::join(dir.path(), "B", &a.export());
    b.exec(DECLARATION);
    let ca = verify("verify-full", "PERSIST_SYNC_TLS_CA");
    assert_first_sync(&a, &tls_conninfo("PERSIST_SYNC_TLS_PORT", "127.0.0.1", &ca));
    // The certificate names localhost too.
    let summary = b
        .try_sync(&tls_conninfo("PERSIST_SYNC_TLS_PORT", "localhost", &ca))
        .expect("sync as localhost");
    assert_eq!((summary.pulled, summary.applied), (2, 2), "{summary:?}");
    assert_eq!(b.rows("notes", "id"), a.rows("notes", "id"));
    // The IP-only certificate is valid for 127.0.0.1.
    let c = device(&dir, "C");
    assert_first_sync(
        &c,
        &tls_conninfo("PERSIST_SYNC_TLS_IP_ONLY_PORT", "127.0.0.1", &ca),
    );
}

#[test]
fn unknown_ca_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = device(&dir, "A");
    for mode in ["verify-full", "verify-ca"] {
        let other_ca = verify(mode, "PERSIST_SYNC_TLS_OTHER_CA");
        assert_rejected(
            &a,
            &tls_conninfo("PERSIST_SYNC_TLS_PORT", "127.0.0.1", &other_ca),
        );
    }
    let missing = tls_conninfo(
        "PERSIST_SYNC_TLS_PORT",
        "127.0.0.1",
        "sslmode=verify-full sslrootcert=/nonexistent/ca.crt",
    );
    let err = a
        .try_sync(&missing)
        .expect_err("sync without its root certificate");
    assert!(
        err.contains("cannot read root certificate /nonexistent/ca.crt"),
        "{err}"
    );
}

#[test]
fn host_name_must_match_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = device(&dir, "A");
    let ca = verify("verify-full", "PERSIST_SYNC_TLS_CA");
    assert_rejected(
        &a,
        &tls_conninfo("PERSIST_SYNC_TLS_IP_ONLY_PORT", "localhost", &ca),
    );
    // verify-ca checks the chain only, so the same server is accepted.
    let chain_only = verify("verify-ca", "PERSIST_SYNC_TLS_CA");
    assert_first_sync(
        &a,
        &tls_conninfo("PERSIST_SYNC_TLS_IP_ONLY_PORT", "localhost", &chain_only),
    );
}

#[test]
fn require_encrypts_without_verifying() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = device(&dir, "A");
    // The servers reject TCP without TLS.
    let plain = tls_conninfo("PERSIST_SYNC_TLS_PORT", "127.0.0.1", "sslmode=disable");
    assert_rejected(&a, &plain);
    assert_first_sync(
        &a,
        &tls_conninfo("PERSIST_SYNC_TLS_PORT", "localhost", "sslmode=require"),
    );
    let b = device(&dir, "B");
    assert_first_sync(
        &b,
        &tls_conninfo(
            "PERSIST_SYNC_TLS_IP_ONLY_PORT",
            "localhost",
            "sslmode=require",
        ),
    );
    // prefer uses TLS when the server offers it.
    let c = device(&dir, "C");
    assert_first_sync(
        &c,
        &tls_conninfo("PERSIST_SYNC_TLS_PORT", "127.0.0.1", "sslmode=prefer"),
    );
}

// The errors of rejected connections name their causes: the certificate
// check that failed, or the server's reason.

#[test]
fn unknown_ca_error_names_issuer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = device(&dir, "A");
    let other_ca = verify("verify-full", "PERSIST_SYNC_TLS_OTHER_CA");
    let err = assert_rejected(
        &a,
        &tls_conninfo("PERSIST_SYNC_TLS_PORT", "127.0.0.1", &other_ca),
    );
    assert_names_cause(
        &err,
        &["unknownissuer", "unknown issuer"],
        "the unknown issuer",
    );
}

#[test]
fn name_mismatch_error_names_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = device(&dir, "A");
    let ca = verify("verify-full", "PERSIST_SYNC_TLS_CA");
    let err = assert_rejected(
        &a,
        &tls_conninfo("PERSIST_SYNC_TLS_IP_ONLY_PORT", "localhost", &ca),
    );
    assert_names_cause(
        &err,
        &["notvalidforname", "not valid for name"],
        "the certificate's missing name localhost",
    );
}

#[test]
fn server_rejection_error_has_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = device(&dir, "A");
    let plain = tls_conninfo("PERSIST_SYNC_TLS_PORT", "127.0.0.1", "sslmode=disable");
    let err = assert_rejected(&a, &plain);
    assert_names_cause(
        &err,
        &["pg_hba.conf", "no encryption"],
        "the server's reason",
    );
}
