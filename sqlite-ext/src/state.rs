//! Per-connection state: the open store, if `persist_init` has been called.
//!
//! One [`Connection`] is created when the extension is loaded into a database
//! connection and is shared by the SQL functions and the `persist` module. It
//! is dropped when SQLite closes the connection (SQLite calls the module's
//! destructor and frees the functions' user data), which drops the open
//! store and with it every key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use persist_core::clock::Hlc;
use persist_core::device_key::{DeviceKey, KeyLocation};
use persist_core::sync::{Version, next_local_version};
use persist_core::{Cipher, DeviceId};

use crate::db::Db;
use crate::error::ExtError;

/// A store opened by `persist_init` on one connection.
pub struct OpenStore {
    /// The store name given to `persist_init`.
    pub name: String,
    /// The keyring with its cache of derived keys.
    pub cipher: Cipher,
    /// This database file's device id.
    pub device_id: DeviceId,
    /// Where the device key is kept.
    pub key_location: KeyLocation,
    /// The device key, to seal the keyring again after it changes.
    pub device_key: DeviceKey,
    /// The hybrid logical clock for this connection's writes.
    pub hlc: Mutex<Hlc>,
    /// Milliseconds added to the wall clock, for tests of clock skew.
    pub clock_offset_ms: i64,
}

impl OpenStore {
    /// The same store with `keyring` in place of its keyring; the clock goes
    /// on from where it is.
    pub fn with_keyring(&self, keyring: persist_core::Keyring) -> Self {
        let hlc = self
            .hlc
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Self {
            name: self.name.clone(),
            cipher: Cipher::new(keyring),
            device_id: self.device_id,
            key_location: self.key_location.clone(),
            device_key: self.device_key.duplicate(),
            hlc: Mutex::new(hlc),
            clock_offset_ms: self.clock_offset_ms,
        }
    }

    /// The version for a local write that replaces `current`.
    pub fn next_version(&self, current: Option<&Version>) -> Version {
        let mut hlc = self.hlc.lock().unwrap_or_else(PoisonError::into_inner);
        next_local_version(&mut hlc, self.now_ms(), self.device_id, current)
    }

    /// The wall clock in milliseconds, with the configured offset.
    pub fn now_ms(&self) -> u64 {
        let wall = persist_core::clock::wall_clock_ms();
        wall.saturating_add_signed(self.clock_offset_ms)
    }
}

/// Counters reported by `persist_status`, for tests and benchmarks.
#[derive(Default)]
pub struct Counters {
    /// Envelopes opened by this connection.
    pub opened: AtomicU64,
    /// Envelopes sealed by this connection.
    pub sealed: AtomicU64,
}

impl Counters {
    /// Counts one opened envelope.
    pub fn count_open(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one sealed envelope.
    pub fn count_seal(&self) {
        self.sealed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The extension's state for one database connection.
pub struct Connection {
    /// The connection handle.
    pub db: Db,
    store: Mutex<Option<Arc<OpenStore>>>,
    /// Usage counters.
    pub counters: Counters,
    /// Counts changes that per-table caches cannot see: rollbacks and
    /// applied sync records.
    generation: AtomicU64,
}

impl Connection {
    /// Creates the state for a connection the extension was just loaded into.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            store: Mutex::new(None),
            counters: Counters::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation of changes that caches cannot see.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Invalidates caches after a rollback or applied sync records.
    pub fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The open store.
    ///
    /// # Errors
    ///
    /// [`ExtError::Usage`] telling the user to call `persist_init` first.
    pub fn store(&self) -> Result<Arc<OpenStore>, ExtError> {
        self.current().ok_or_else(|| {
            ExtError::usage(
                "no Persist store is open on this connection; call \
                 SELECT persist_init('<store name>') first",
            )
        })
    }

    /// The open store, if there is one.
    pub fn current(&self) -> Option<Arc<OpenStore>> {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the open store.
    pub fn set_store(&self, store: Option<Arc<OpenStore>>) {
        *self.store.lock().unwrap_or_else(PoisonError::into_inner) = store;
    }
}
