//! The client side of the sync server's pairing mailbox.
//!
//! The mailbox contains, per mailbox id, the joiner's response and then the
//! inviter's keyring message, both opaque bytes. The joiner deletes the row
//! once it has created its store from the message, and the server deletes
//! rows past the invite's expiry. The mailbox
//! id, which both devices derive from the invite's one-time secret, is the
//! capability: the mailbox functions need no write token. The invite id is
//! not secret (every response contains it), so it names no mailbox.

use persist_core::pairing::{MailboxId, PairingMessage, Response};

use super::conninfo::ConnInfo;
use super::describe;
use crate::error::ExtError;

/// The state of an invite's mailbox when the joiner fetches its message.
pub enum Pickup {
    /// The keyring message, which stays in the mailbox until [`discard`].
    Ready(Vec<u8>),
    /// The response is there, but the inviter has not admitted it yet.
    Waiting,
    /// Nothing for this invite: it expired, the joiner already created its
    /// store from the message, or the inviter rejected the response.
    Missing,
}

/// Connects to the sync server for the mailbox calls of `function`.
///
/// # Errors
///
/// A usage error when the server cannot be reached.
pub fn connect(function: &str, server: &ConnInfo) -> Result<postgres::Client, ExtError> {
    super::connect(function, server)
}

fn mailbox_error(function: &str, what: &str, err: &postgres::Error) -> ExtError {
    if err
        .as_db_error()
        .is_some_and(|db| db.code() == &postgres::error::SqlState::UNDEFINED_FUNCTION)
    {
        // Persist 0.1.0 ships no extension upgrade script, so the only way
        // to a newer sync schema is to create it again.
        return ExtError::usage(format!(
            "{function}: the sync server has no pairing mailbox, or an older one than this \
             client; there is no upgrade script, so recreate the sync schema: apply the current \
             pg-ext/sql/sync_server.sql to an empty schema persist, or run DROP EXTENSION \
             persist and CREATE EXTENSION persist (this deletes the synced records, which the \
             devices push again at their next sync, and any Persist stores of that database)"
        ));
    }
    ExtError::usage(format!(
        "{function}: {what} failed on the sync server: {}",
        describe(err)
    ))
}

/// Reads column `index` of a mailbox function's result row. A value of
/// another type, or NULL where none is allowed, means the server's mailbox
/// functions are not the ones this client expects.
fn column<'a, T: postgres::types::FromSql<'a>>(
    function: &str,
    call: &str,
    row: &'a postgres::Row,
    index: usize,
) -> Result<T, ExtError> {
    row.try_get(index).map_err(|err| {
        ExtError::usage(format!(
            "{function}: {call} on the sync server returned an invalid column {index}: {err}; \
             the server's pairing mailbox functions differ from pg-ext/sql/sync_server.sql"
        ))
    })
}

/// Posts the joiner's response for the inviter to pick up.
///
/// # Errors
///
/// A usage error when the server cannot be reached, already holds a
/// response to this invite, or the invite has expired.
pub fn post_response(
    function: &str,
    server: &ConnInfo,
    mailbox_id: MailboxId,
    response: &Response,
    expires: u64,
) -> Result<(), ExtError> {
    let mut client = connect(function, server)?;
    let expires = i64::try_from(expires).unwrap_or(i64::MAX);
    client
        .execute(
            "SELECT persist.pairing_post_response($1, $2, $3)",
            &[
                &mailbox_id.as_bytes().as_slice(),
                &response.to_bytes(),
                &expires,
            ],
        )
        .map_err(|err| mailbox_error(function, "posting the pairing response", &err))?;
    Ok(())
}

/// Whether the inviting device can use the server's pairing mailbox.
pub enum MailboxAccess {
    /// The mailbox functions exist and this role may execute them.
    Usable,
    /// The server has no mailbox: it was set up before pairing existed.
    Missing,
    /// The functions exist, but this role lacks EXECUTE on the named one.
    NoPrivilege(&'static str),
}

/// The mailbox functions the inviting device calls during a sync.
const INVITER_FUNCTIONS: [&str; 3] = [
    "persist.pairing_get_response(bytea)",
    "persist.pairing_post_message(bytea,bytea)",
    "persist.pairing_discard(bytea)",
];

/// Finds out whether the server has the pairing mailbox and whether this
/// role may execute the functions the inviting device calls.
///
/// # Errors
///
/// A usage error for a server error.
pub fn mailbox_access(client: &mut postgres::Client) -> Result<MailboxAccess, ExtError> {
    const FUNCTION: &str = "persist_sync";
    for signature in INVITER_FUNCTIONS {
        // has_function_privilege raises an error for a function that does
        // not exist, so it runs only once to_regprocedure found it.
        let row = client
            .query_one(
                "SELECT CASE WHEN to_regprocedure($1) IS NULL THEN NULL
                        ELSE has_function_privilege(to_regprocedure($1), 'EXECUTE') END",
                &[&signature],
            )
            .map_err(|err| mailbox_error(FUNCTION, "looking for the pairing mailbox", &err))?;
        let privilege: Option<bool> = column(FUNCTION, "has_function_privilege", &row, 0)?;
        match privilege {
            None => return Ok(MailboxAccess::Missing),
            Some(false) => return Ok(MailboxAccess::NoPrivilege(signature)),
            Some(true) => {}
        }
    }
    Ok(MailboxAccess::Usable)
}

/// Returns the response waiting for the inviter, if there is one.
///
/// # Errors
///
/// A usage error for a server error.
pub fn get_response(
    client: &mut postgres::Client,
    mailbox_id: MailboxId,
) -> Result<Option<Vec<u8>>, ExtError> {
    let row = client
        .query_one(
            "SELECT persist.pairing_get_response($1)",
            &[&mailbox_id.as_bytes().as_slice()],
        )
        .map_err(|err| mailbox_error("persist_sync", "reading the pairing mailbox", &err))?;
    column("persist_sync", "persist.pairing_get_response", &row, 0)
}

/// Posts the inviter's keyring message for the joiner to pick up.
///
/// # Errors
///
/// A usage error for a server error.
pub fn post_message(
    client: &mut postgres::Client,
    mailbox_id: MailboxId,
    message: &PairingMessage,
) -> Result<(), ExtError> {
    client
        .execute(
            "SELECT persist.pairing_post_message($1, $2)",
            &[&mailbox_id.as_bytes().as_slice(), &message.as_bytes()],
        )
        .map_err(|err| mailbox_error("persist_sync", "posting the keyring message", &err))?;
    Ok(())
}

/// Removes an invite's mailbox: after its response failed verification
/// (the inviter, in `persist_sync`), or after the joiner created its store.
///
/// # Errors
///
/// A usage error for a server error.
pub fn discard(
    function: &str,
    client: &mut postgres::Client,
    mailbox_id: MailboxId,
) -> Result<(), ExtError> {
    client
        .execute(
            "SELECT persist.pairing_discard($1)",
            &[&mailbox_id.as_bytes().as_slice()],
        )
        .map_err(|err| mailbox_error(function, "deleting the pairing mailbox", &err))?;
    Ok(())
}

/// Fetches the keyring message of an invite. The message stays in the
/// mailbox, so a joiner that fails to create its store can fetch it again.
/// The joiner calls [`discard`] after success.
///
/// # Errors
///
/// A usage error when the server returns an error.
pub fn get_message(
    function: &str,
    client: &mut postgres::Client,
    mailbox_id: MailboxId,
) -> Result<Pickup, ExtError> {
    let call = "persist.pairing_get_message";
    let row = client
        .query_one(
            "SELECT state, message FROM persist.pairing_get_message($1)",
            &[&mailbox_id.as_bytes().as_slice()],
        )
        .map_err(|err| mailbox_error(function, "fetching the keyring message", &err))?;
    let state: String = column(function, call, &row, 0)?;
    let message: Option<Vec<u8>> = column(function, call, &row, 1)?;
    Ok(match (state.as_str(), message) {
        ("ready", Some(bytes)) => Pickup::Ready(bytes),
        ("waiting", _) => Pickup::Waiting,
        _ => Pickup::Missing,
    })
}
