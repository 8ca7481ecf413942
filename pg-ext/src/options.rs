//! The options of `persist.init`, parsed from its JSON argument.

use std::path::PathBuf;

use persist_core::Passphrase;
use serde_json::Value as Json;
use zeroize::Zeroizing;

use crate::error::PgError;

/// Largest options text accepted by `persist.init`, as in the SQLite
/// extension.
pub const MAX_OPTIONS_LEN: usize = 256 * 1024;

const OPTION_NAMES: &str = "keyfile, key, passphrase";

/// Options of `persist.init`.
#[derive(Default)]
pub struct InitOptions {
    /// A keyfile path on the database server.
    pub keyfile: Option<PathBuf>,
    /// An exported keyring to import.
    pub key: Option<Zeroizing<String>>,
    /// The passphrase of `key`.
    pub passphrase: Option<Passphrase>,
}

impl InitOptions {
    /// Parses the options object; `None` (SQL NULL) means no options.
    ///
    /// # Errors
    ///
    /// 54000 for text over [`MAX_OPTIONS_LEN`], and 22023 naming the option
    /// that is unknown or has the wrong type. Values of `key` and
    /// `passphrase` never appear in a message.
    pub fn parse(text: Option<&str>) -> Result<Self, PgError> {
        let Some(text) = text else {
            return Ok(Self::default());
        };
        if text.len() > MAX_OPTIONS_LEN {
            return Err(PgError::too_large(
                "persist.init: argument 2 (options)",
                text.len(),
                MAX_OPTIONS_LEN,
            ));
        }
        let fail = |reason: String| PgError::invalid(format!("persist.init: options {reason}"));
        // serde_json's syntax errors give a line and column, never the text.
        let json: Json = serde_json::from_str(text).map_err(|err| {
            fail(format!(
                "are not valid JSON: {err}; expected an object such as \
                 {{\"keyfile\": \"/etc/persist/app.key\"}}"
            ))
        })?;
        let Json::Object(map) = json else {
            return Err(fail("must be a JSON object".into()));
        };

        let mut options = Self::default();
        for (name, value) in map {
            let expect = |kind: &str| fail(format!("field {name:?} must be {kind}"));
            match name.as_str() {
                "keyfile" => {
                    let path = value
                        .as_str()
                        .ok_or_else(|| expect("a string (a file path)"))?;
                    if path.is_empty() {
                        return Err(expect("a non-empty file path"));
                    }
                    options.keyfile = Some(PathBuf::from(path));
                }
                "key" => {
                    let key = value
                        .as_str()
                        .ok_or_else(|| expect("a string (an exported key)"))?;
                    options.key = Some(Zeroizing::new(key.to_owned()));
                }
                "passphrase" => {
                    let passphrase = value.as_str().ok_or_else(|| expect("a string"))?;
                    options.passphrase = Some(Passphrase::new(passphrase));
                }
                "keychain" => {
                    return Err(fail(
                        "field \"keychain\" is not supported by the PostgreSQL extension: a \
                         database server has no OS keychain; set persist.keyfile instead"
                            .into(),
                    ));
                }
                _ => {
                    return Err(fail(format!(
                        "field {name:?} is unknown; expected one of {OPTION_NAMES}"
                    )));
                }
            }
        }
        if options.passphrase.is_some() && options.key.is_none() {
            return Err(fail(
                "give a passphrase without a key; the passphrase only opens an exported key".into(),
            ));
        }
        Ok(options)
    }
}
