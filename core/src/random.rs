//! Randomness, only ever from the operating system's CSPRNG.
//!
//! Keys are drawn straight from the OS. Nonces, drawn once per envelope,
//! come from a small per-thread pool that is refilled from the OS, so that
//! sealing does not make a system call every time. The pool is discarded in
//! a child process after `fork`, so parent and child never share a nonce.

use std::cell::RefCell;

use zeroize::Zeroize;

use crate::error::Error;

/// Fills `buf` with bytes from the operating system's CSPRNG.
///
/// # Errors
///
/// [`Error::Random`] when the operating system provides no randomness.
pub fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(Error::Random)
}

/// Returns `N` random bytes.
///
/// # Errors
///
/// [`Error::Random`] when the operating system provides no randomness.
pub fn array<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

const POOL_LEN: usize = 4096;

struct Pool {
    bytes: Box<[u8; POOL_LEN]>,
    used: usize,
    pid: u32,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

thread_local! {
    static POOL: RefCell<Option<Pool>> = const { RefCell::new(None) };
}

/// Returns `N` random bytes from the per-thread pool, which holds bytes
/// from the operating system's CSPRNG; each byte is handed out once and
/// then wiped.
///
/// # Errors
///
/// [`Error::Random`] when the operating system provides no randomness.
pub fn pooled<const N: usize>() -> Result<[u8; N], Error> {
    const { assert!(N <= POOL_LEN) };
    POOL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let pid = std::process::id();
        let stale = slot
            .as_ref()
            .is_none_or(|pool| pool.pid != pid || pool.used + N > POOL_LEN);
        if stale {
            let mut bytes = Box::new([0u8; POOL_LEN]);
            fill(bytes.as_mut())?;
            *slot = Some(Pool {
                bytes,
                used: 0,
                pid,
            });
        }
        let Some(pool) = slot.as_mut() else {
            unreachable!("the pool was filled above");
        };
        let mut out = [0u8; N];
        let taken = &mut pool.bytes[pool.used..pool.used + N];
        out.copy_from_slice(taken);
        taken.zeroize();
        pool.used += N;
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_values_differ_across_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(3 * POOL_LEN / 12) {
            assert!(seen.insert(pooled::<12>().unwrap()));
        }
    }
}
