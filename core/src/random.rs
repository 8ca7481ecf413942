//! Randomness, only ever from the operating system's CSPRNG.

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
