//! Plaintext padding, so that ciphertext sizes reveal only coarse buckets.
//!
//! Every envelope plaintext ends with a `0x80` marker followed by zero or more
//! `0x00` bytes (the ISO/IEC 7816-4 scheme). Unpadded envelopes carry just the
//! marker. Padded ones grow to a bucket chosen by Padmé (Nikitin et al.,
//! "Reducing Metadata Leakage from Encrypted Files and Communication with
//! PURBs", PETS 2019): a length keeps only its top bits, so the overhead is at
//! most about 12% and a size leaks O(log log n) bits. No bucket is smaller than
//! [`MIN_BUCKET`].

use crate::error::Error;

/// The smallest padded plaintext length.
pub const MIN_BUCKET: usize = 64;

const MARKER: u8 = 0x80;

/// How a plaintext is padded before sealing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Only the end marker: the ciphertext reveals the exact length.
    None,
    /// Pad to the Padmé bucket of the plaintext, and to at least the bucket
    /// of a payload of `at_least` bytes. A tombstone passes the payload size
    /// of the row it replaces, so a delete looks like any other write.
    Bucket {
        /// A payload length, marker excluded, whose bucket the result must
        /// reach; values above the envelope's plaintext limit count as the
        /// limit.
        at_least: usize,
    },
}

/// Returns the Padmé bucket for a plaintext of `len` bytes, marker included.
pub fn bucket(len: usize) -> usize {
    let len = len.max(MIN_BUCKET);
    let exponent = usize::BITS - 1 - len.leading_zeros();
    let exponent_bits = u32::BITS - exponent.leading_zeros();
    let low_bits = exponent - exponent_bits;
    let mask = (1usize << low_bits) - 1;
    (len + mask) & !mask
}

/// Appends the marker and the padding `padding` asks for.
pub fn pad(buf: &mut Vec<u8>, start: usize, padding: Padding) {
    buf.push(MARKER);
    if let Padding::Bucket { at_least } = padding {
        let len = buf.len() - start;
        let floor = at_least.min(crate::envelope::MAX_PLAINTEXT) + 1;
        let target = bucket(len).max(bucket(floor));
        buf.resize(start + target, 0);
    }
}

/// Returns the length of the payload before the marker.
///
/// # Errors
///
/// [`Error::Malformed`] when the plaintext has no marker after its zeros.
pub fn unpadded_len(plaintext: &[u8]) -> Result<usize, Error> {
    let end = plaintext
        .iter()
        .rposition(|byte| *byte != 0)
        .ok_or_else(|| Error::malformed("envelope", "padding has no end marker"))?;
    if plaintext[end] != MARKER {
        return Err(Error::malformed(
            "envelope",
            format!(
                "padding ends with byte {:#04x}, expected 0x80",
                plaintext[end]
            ),
        ));
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_examples() {
        assert_eq!(bucket(1), 64);
        assert_eq!(bucket(64), 64);
        assert_eq!(bucket(65), 72);
        assert_eq!(bucket(100), 104);
        assert_eq!(bucket(1000), 1024);
        assert_eq!(bucket(1025), 1088);
        assert_eq!(bucket(1_000_000), 1_015_808);
    }

    #[test]
    fn bucket_overhead_is_bounded() {
        for len in 1..100_000usize {
            let padded = bucket(len);
            assert!(padded >= len);
            assert!(
                padded <= (len.max(MIN_BUCKET) as f64 * 1.125) as usize + 1,
                "{len}"
            );
        }
    }

    #[test]
    fn pad_and_unpad() {
        for padding in [Padding::None, Padding::Bucket { at_least: 0 }] {
            for payload in [&b""[..], b"\x00\x00", b"abc\x80", &[0x80; 100]] {
                let mut buf = payload.to_vec();
                pad(&mut buf, 0, padding);
                assert_eq!(unpadded_len(&buf).unwrap(), payload.len());
            }
        }
    }

    #[test]
    fn at_least_raises_bucket() {
        let mut buf = b"tiny".to_vec();
        pad(&mut buf, 0, Padding::Bucket { at_least: 500 });
        assert_eq!(buf.len(), bucket(501));
    }

    #[test]
    fn at_least_matches_row_at_bucket_edge() {
        // A 64-byte payload plus its marker crosses into the 72-byte bucket;
        // a tombstone given that payload size must land in the same bucket.
        let mut row = vec![1u8; 64];
        pad(&mut row, 0, Padding::Bucket { at_least: 0 });
        let mut tombstone = b"key".to_vec();
        pad(&mut tombstone, 0, Padding::Bucket { at_least: 64 });
        assert_eq!(row.len(), 72);
        assert_eq!(tombstone.len(), row.len());
    }

    #[test]
    fn unpad_rejects_missing_marker() {
        assert!(unpadded_len(&[]).is_err());
        assert!(unpadded_len(&[0, 0]).is_err());
        assert!(unpadded_len(&[1, 0]).is_err());
    }
}
