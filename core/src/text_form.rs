//! The text form of key exports and pairing codes: one line that survives
//! copy and paste and catches typos.
//!
//! ```text
//! <prefix><Crockford base32 of: payload | SHA-256(payload)[..4]>
//! ```
//!
//! Crockford base32 has no punctuation and reads the same in upper or lower
//! case. The decoder ignores white space and hyphens, and reads `O` as `0`
//! and `I`, `L` as `1`. The checksum catches a mistyped or truncated string
//! before any key is used.

use zeroize::Zeroizing;

use crate::error::Error;
use crate::primitives::sha256;

/// Length of the checksum appended to the payload.
const CHECKSUM_LEN: usize = 4;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// One kind of text code: its prefix, its name in errors and its size limit.
pub(crate) struct TextForm {
    /// The prefix every code of this kind starts with, such as `PERSIST-KEY-1`.
    pub(crate) prefix: &'static str,
    /// The name of the code in error messages, such as "key export".
    pub(crate) what: &'static str,
    /// Maximum length of the text in bytes, before trimming.
    pub(crate) max_len: usize,
}

impl TextForm {
    /// Encodes `payload` with its checksum after the prefix.
    pub(crate) fn encode(&self, payload: &[u8]) -> Zeroizing<String> {
        let checksum = sha256(payload);
        let mut text = Zeroizing::new(String::with_capacity(
            self.prefix.len() + (payload.len() + CHECKSUM_LEN) * 8 / 5 + 1,
        ));
        text.push_str(self.prefix);
        let mut checked = Zeroizing::new(Vec::with_capacity(payload.len() + CHECKSUM_LEN));
        checked.extend_from_slice(payload);
        checked.extend_from_slice(&checksum[..CHECKSUM_LEN]);
        encode_base32(&checked, &mut text);
        text
    }

    /// Strips the prefix, decodes the base32 and checks the checksum;
    /// returns the payload.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] over the size limit, [`Error::Malformed`] for a
    /// missing prefix, a character outside the alphabet or a string too
    /// short to hold a payload, and [`Error::Checksum`] for a damaged one.
    pub(crate) fn decode(&self, text: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        if text.len() > self.max_len {
            return Err(Error::TooLarge {
                what: self.what,
                size: text.len(),
                limit: self.max_len,
            });
        }
        let trimmed = text.trim();
        let body = trimmed
            .get(..self.prefix.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(self.prefix))
            .and_then(|_| trimmed.get(self.prefix.len()..))
            .ok_or_else(|| {
                Error::malformed(
                    self.what,
                    format!(
                        "it does not start with {}; paste the whole string",
                        self.prefix
                    ),
                )
            })?;
        let mut payload = self.decode_base32(body)?;
        if payload.len() <= CHECKSUM_LEN + 2 {
            return Err(Error::malformed(
                self.what,
                "it is too short; paste the whole string",
            ));
        }
        let checksum_at = payload.len() - CHECKSUM_LEN;
        let expected = sha256(&payload[..checksum_at]);
        if expected[..CHECKSUM_LEN] != payload[checksum_at..] {
            return Err(Error::Checksum { what: self.what });
        }
        payload.truncate(checksum_at);
        Ok(payload)
    }

    fn decode_base32(&self, text: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 5 / 8));
        let mut buffer: u32 = 0;
        let mut bits = 0;
        for (index, c) in text.chars().enumerate() {
            if c.is_whitespace() || c == '-' {
                continue;
            }
            let digit = base32_digit(c).ok_or_else(|| {
                Error::malformed(
                    self.what,
                    format!(
                        "character {c:?} at position {} is not base32",
                        index + self.prefix.len() + 1
                    ),
                )
            })?;
            buffer = (buffer << 5) | digit;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
            }
            buffer &= (1 << bits) - 1;
        }
        // Leftover bits are the encoder's zero fill; anything else means the
        // string was cut or extended by a character.
        if bits >= 5 || buffer != 0 {
            return Err(Error::Checksum { what: self.what });
        }
        Ok(out)
    }
}

fn encode_base32(bytes: &[u8], out: &mut String) {
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
}

fn base32_digit(c: char) -> Option<u32> {
    let value = match c.to_ascii_uppercase() {
        c @ '0'..='9' => c as u32 - '0' as u32,
        'O' => 0,
        'I' | 'L' => 1,
        c => ALPHABET.iter().position(|a| char::from(*a) == c)? as u32,
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: TextForm = TextForm {
        prefix: "TEST-1",
        what: "test code",
        max_len: 1024,
    };

    #[test]
    fn base32_round_trip_all_lengths() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut text = String::new();
            encode_base32(&bytes, &mut text);
            assert_eq!(
                FORM.decode_base32(&text).unwrap().as_slice(),
                bytes.as_slice()
            );
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let payload = b"payload bytes".to_vec();
        let text = FORM.encode(&payload);
        assert!(text.starts_with("TEST-1"));
        assert_eq!(FORM.decode(&text).unwrap().as_slice(), payload.as_slice());
    }

    #[test]
    fn checksum_error_names_the_code() {
        let text = FORM.encode(b"payload bytes");
        let mut chars: Vec<char> = text.chars().collect();
        let last = chars.len() - 3;
        chars[last] = if chars[last] == 'X' { 'Y' } else { 'X' };
        let damaged: String = chars.into_iter().collect();
        let err = FORM.decode(&damaged).unwrap_err();
        assert!(
            matches!(err, Error::Checksum { what: "test code" }),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("the test code is damaged"),
            "{err}"
        );
    }

    #[test]
    fn oversized_text_is_rejected_with_limit() {
        let err = FORM.decode(&"0".repeat(1025)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test code is 1025 bytes, over the limit of 1024 bytes"
        );
    }
}
