//! A bounds-checked reader for the binary formats.
//!
//! Every parser reads through it, so a truncated input becomes an
//! [`Error::Malformed`] naming the format and the offset, never a panic.

use crate::error::Error;

pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, data: &'a [u8]) -> Self {
        Self { data, pos: 0, what }
    }

    pub(crate) fn take(&mut self, len: usize, field: &str) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| {
                Error::malformed(
                    self.what,
                    format!(
                        "truncated: {field} needs {len} bytes at offset {}, but only {} remain",
                        self.pos,
                        self.data.len() - self.pos
                    ),
                )
            })?;
        let slice = &self.data[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, Error> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a field with a 4-byte big-endian length prefix.
    pub(crate) fn lp(&mut self, field: &str) -> Result<&'a [u8], Error> {
        let len = self.u32(field)?;
        self.take(len as usize, field)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let slice = &self.data[self.pos..];
        self.pos = self.data.len();
        slice
    }

    /// The offset of the next byte to read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Fails when bytes are left over after the last field.
    pub(crate) fn finish(&self) -> Result<(), Error> {
        if self.pos == self.data.len() {
            Ok(())
        } else {
            Err(Error::malformed(
                self.what,
                format!(
                    "{} unexpected bytes after the end at offset {}",
                    self.data.len() - self.pos,
                    self.pos
                ),
            ))
        }
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> Error {
        Error::malformed(self.what, reason)
    }
}
