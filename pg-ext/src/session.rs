//! The backend's open store: its keyring, kept only in this process's memory.
//!
//! A session opens one store at a time with `persist.init`. The keys live in a
//! thread-local [`Cipher`] of the backend and are dropped, which zeroizes
//! them, when
//!
//! - `persist.close()` is called or `persist.init` opens another store;
//! - the transaction or savepoint in which `persist.init` wrote the store's
//!   rows (a new store, or a key import) rolls back or is prepared for
//!   two-phase commit. The tables would then lack the keyring that the
//!   session would go on sealing values under;
//! - the backend exits (an `on_proc_exit` callback).
//!
//! Parallel workers never see the keys, so every function that uses them is
//! PARALLEL RESTRICTED or UNSAFE.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};

use persist_core::device_key::KeyLocation;
use persist_core::{Cipher, DeviceId};
use pgrx::PgSqlErrorCode;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::PgError;

/// A store opened by `persist.init` in this session.
pub struct OpenStore {
    /// The store name given to `persist.init`.
    pub name: String,
    /// The keyring with its cache of derived keys.
    pub cipher: Cipher,
    /// This server's device id for the store, from `persist.stores`; `None`
    /// for a session-only import of a store this database does not list.
    pub device_id: Option<DeviceId>,
    /// The place of the device key; `None` when the keyring was imported for
    /// this session only.
    pub key_location: Option<KeyLocation>,
}

impl OpenStore {
    /// Tells whether the keyring lives only in this session's memory.
    pub fn session_only(&self) -> bool {
        self.key_location.is_none()
    }

    /// Describes where the keys came from, for the JSON reports.
    pub fn key_location_text(&self) -> String {
        match &self.key_location {
            Some(location) => location.to_string(),
            None => "imported key, this session only".to_owned(),
        }
    }
}

/// Envelope counters of this backend, reported by `persist.status()`.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    /// Envelopes opened by this backend.
    pub opened: u64,
    /// Envelopes sealed by this backend.
    pub sealed: u64,
}

#[derive(Default)]
struct Session {
    store: Option<OpenStore>,
    /// The stores whose rows `persist.init` wrote in the current transaction,
    /// each with the subtransaction that wrote them, until the top
    /// transaction commits. A later `persist.init` of the same store reads
    /// those rows, so it depends on them too.
    uncommitted: Vec<(String, pg_sys::SubTransactionId)>,
    /// The reason the last store was closed without `persist.close()`.
    closed_because: Option<String>,
    counters: Counters,
}

impl Session {
    /// Closes the open store if its keyring comes from rows in `written`.
    fn close_if_written(&mut self, written: &[String], reason: &str) {
        let depends = self
            .store
            .as_ref()
            .is_some_and(|store| store.key_location.is_some() && written.contains(&store.name));
        if depends && let Some(store) = self.store.take() {
            self.closed_because = Some(format!(
                "store {:?} was closed because {reason} before its keyring was committed",
                store.name
            ));
        }
    }
}

thread_local! {
    static SESSION: RefCell<Session> = RefCell::new(Session::default());
    static EXIT_HOOK_PID: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` with the open store.
///
/// # Errors
///
/// 55000 (`object_not_in_prerequisite_state`) when no store is open, and
/// whatever `f` returns.
pub fn with_store<T>(
    function: &str,
    f: impl FnOnce(&OpenStore, &mut Counters) -> Result<T, PgError>,
) -> Result<T, PgError> {
    SESSION.with(|session| {
        let mut session = session.borrow_mut();
        let session = &mut *session;
        match &session.store {
            Some(store) => f(store, &mut session.counters),
            None => {
                let reason = match &session.closed_because {
                    Some(reason) => format!(" ({reason})"),
                    None => String::new(),
                };
                Err(PgError::new(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("{function}: no Persist store is open in this session{reason}"),
                )
                .with_hint("Call SELECT persist.init('<store name>') first."))
            }
        }
    })
}

/// Runs `f` with the open store, if any, and the counters.
pub fn inspect<T>(f: impl FnOnce(Option<&OpenStore>, Counters) -> T) -> T {
    SESSION.with(|session| {
        let session = session.borrow();
        f(session.store.as_ref(), session.counters)
    })
}

/// Makes `store` the session's open store, dropping the previous one.
///
/// `saved` is true when `persist.init` wrote the store's rows in the current
/// transaction, so that a rollback must close the store.
pub fn install(store: OpenStore, saved: bool) {
    ensure_exit_hook();
    SESSION.with(|session| {
        let mut session = session.borrow_mut();
        if saved {
            // SAFETY: persist.init runs inside a transaction, where Postgres
            // always has a current subtransaction id.
            let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
            session
                .uncommitted
                .push((store.name.clone(), subtransaction));
        }
        session.store = Some(store);
        session.closed_because = None;
    });
}

/// Drops the open store and its keys; returns whether one was open.
pub fn close() -> bool {
    SESSION.with(|session| {
        let mut session = session.borrow_mut();
        session.closed_because = None;
        session.store.take().is_some()
    })
}

/// Runs `f` on the session from a transaction callback. The borrow of a
/// function that raised an error is released during unwinding, before the
/// callbacks run, so `try_borrow_mut` only keeps a bug from turning into a
/// second panic.
fn from_callback(f: impl FnOnce(&mut Session)) {
    SESSION.with(|session| {
        if let Ok(mut session) = session.try_borrow_mut() {
            f(&mut session);
        }
    });
}

/// Registers the transaction callbacks; called once from `_PG_init`.
pub fn register_callbacks() {
    // SAFETY: both callbacks are plain functions that live as long as the
    // library, and Postgres keeps the list across transactions.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
    ensure_exit_hook();
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    let reason = match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            from_callback(|session| session.uncommitted.clear());
            return;
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => "its transaction rolled back",
        // The outcome of a prepared transaction is decided later, possibly
        // by another session, so its rows count as not committed.
        pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            "its transaction was prepared for two-phase commit"
        }
        _ => return,
    };
    from_callback(|session| {
        let written: Vec<String> = session
            .uncommitted
            .drain(..)
            .map(|(name, _)| name)
            .collect();
        session.close_if_written(&written, reason);
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    subtransaction: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => from_callback(|session| {
            let mut written = Vec::new();
            session.uncommitted.retain(|(name, writer)| {
                let aborted = *writer == subtransaction;
                if aborted {
                    written.push(name.clone());
                }
                !aborted
            });
            session.close_if_written(&written, "its savepoint rolled back");
        }),
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => from_callback(|session| {
            for (_, writer) in &mut session.uncommitted {
                if *writer == subtransaction {
                    *writer = parent;
                }
            }
        }),
        _ => {}
    }
}

/// Registers [`drop_keys_at_exit`] once per process. A backend forked from a
/// postmaster that preloaded the library inherits none of the postmaster's
/// exit callbacks, so the pid decides whether this process has one.
fn ensure_exit_hook() {
    let pid = std::process::id();
    if EXIT_HOOK_PID.with(Cell::get) == pid {
        return;
    }
    // SAFETY: the callback is a plain function that lives as long as the
    // process, and the argument is unused.
    unsafe { pg_sys::on_proc_exit(Some(drop_keys_at_exit), pg_sys::Datum::from(0)) };
    EXIT_HOOK_PID.with(|registered| registered.set(pid));
}

/// Drops the open store when the backend exits. Thread-local destructors do
/// not run at process exit, so without this the keys would stay in memory
/// until the operating system reclaims it.
#[pg_guard]
unsafe extern "C-unwind" fn drop_keys_at_exit(_code: c_int, _arg: pg_sys::Datum) {
    SESSION.with(|session| {
        if let Ok(mut session) = session.try_borrow_mut() {
            session.store = None;
        }
    });
}
