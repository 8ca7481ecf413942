//! `persist.invite` and `persist.admit`: the inviting side of device pairing.
//!
//! A store opened with a keyfile can invite a new device (an SQLite
//! database, which accepts with `persist_accept`) and admit its response,
//! returning the keyring message for `persist_join`. The codes and the key
//! agreement are those of `persist_core::pairing`. The invite's one-time
//! X25519 secret waits in `persist.pairing_invites`, sealed under the device
//! key. Admitting the response claims the invite first, in one conditional
//! UPDATE that marks it used and deletes the sealed state.
//! Invites that expired more than a day ago are deleted.

use persist_core::InviteId;
use persist_core::device_key::{self, DeviceKey, KeyLocation, KeySource};
use persist_core::pairing::{self, DEFAULT_LIFETIME_SECS, PendingInvite, Response};
use pgrx::PgSqlErrorCode;
use pgrx::prelude::*;
use serde_json::Value as Json;

use crate::error::{CoreContext, PgError, Subject};
use crate::options::MAX_OPTIONS_LEN;
use crate::session::{self, OpenStore};

/// How long a row outlives its expiry time, without its sealed state, so
/// that a late response gets "expired" rather than "not found".
const EXPIRED_ROW_KEPT_SECS: u64 = 86_400;

fn spi_failed(function: &str, what: &str, error: pgrx::spi::SpiError) -> PgError {
    PgError::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("{function}: {what} failed: {error}"),
    )
}

fn to_sql_time(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn now_seconds() -> u64 {
    persist_core::clock::wall_clock_ms() / 1000
}

/// Loads the device key of the open store from its keyfile; a session-only
/// store has none to seal the invite under.
fn device_key_of(function: &str, store: &OpenStore) -> Result<DeviceKey, PgError> {
    let Some(KeyLocation::Keyfile(path)) = &store.key_location else {
        return Err(PgError::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "{function}: store {:?} is open with an imported key for this session only, \
                 and pairing needs a device key to seal the invite under",
                store.name
            ),
        )
        .with_hint("Open the store with a keyfile: set persist.keyfile and call persist.init."));
    };
    device_key::load_or_create(&store.name, &KeySource::Keyfile(path.clone()), false)
        .context_with(Subject::Other, || {
            format!("{function}: the device key of store {:?}", store.name)
        })
}

/// Deletes the sealed state of expired invites, and the rows a day later.
fn purge_expired(function: &str, now: u64) -> Result<(), PgError> {
    Spi::connect_mut(|client| {
        client.update(
            "UPDATE persist.pairing_invites SET sealed = NULL \
             WHERE expires OPERATOR(pg_catalog.<=) $1 AND sealed IS NOT NULL",
            None,
            &[to_sql_time(now).into()],
        )?;
        client.update(
            "DELETE FROM persist.pairing_invites WHERE expires OPERATOR(pg_catalog.<=) $1",
            None,
            &[to_sql_time(now.saturating_sub(EXPIRED_ROW_KEPT_SECS)).into()],
        )?;
        Ok(())
    })
    .map_err(|error| spi_failed(function, "cleaning up expired invites", error))
}

fn parse_lifetime(options: Option<&str>) -> Result<u64, PgError> {
    let Some(text) = options else {
        return Ok(DEFAULT_LIFETIME_SECS);
    };
    if text.len() > MAX_OPTIONS_LEN {
        return Err(PgError::too_large(
            "persist.invite: argument 1 (options)",
            text.len(),
            MAX_OPTIONS_LEN,
        ));
    }
    let fail = |reason: String| PgError::invalid(format!("persist.invite: options {reason}"));
    let parsed: Json = serde_json::from_str(text).map_err(|err| {
        fail(format!(
            "are not valid JSON: {err}; expected an object such as {{\"lifetime\": 600}}"
        ))
    })?;
    let Json::Object(map) = parsed else {
        return Err(fail(
            "must be a JSON object such as {\"lifetime\": 600}".into(),
        ));
    };
    let mut lifetime = DEFAULT_LIFETIME_SECS;
    for (name, value) in map {
        if name != "lifetime" {
            return Err(fail(format!(
                "field {name:?} is unknown; expected lifetime"
            )));
        }
        lifetime = value.as_u64().ok_or_else(|| {
            fail(format!(
                "field \"lifetime\" must be a number of seconds from {} to {}",
                pairing::MIN_LIFETIME_SECS,
                pairing::MAX_LIFETIME_SECS
            ))
        })?;
    }
    pairing::check_lifetime(lifetime)
        .context_with(Subject::Other, || "persist.invite: option \"lifetime\"")?;
    Ok(lifetime)
}

/// Creates an invite to the open store and returns the invite code.
///
/// # Errors
///
/// 55000 when no store is open or it is open for this session only, 22023
/// for bad options, 54000 for options over the size limit, and the keyfile
/// errors of [`crate::error`].
pub fn invite(options: Option<&str>) -> Result<String, PgError> {
    const FUNCTION: &str = "persist.invite";
    let lifetime = parse_lifetime(options)?;
    let now = now_seconds();
    let (name, code, invite_id, expires, sealed) = session::with_store(FUNCTION, |store, _| {
        let device_key = device_key_of(FUNCTION, store)?;
        let pending = PendingInvite::create(store.cipher.store_id(), now, lifetime)
            .context_with(Subject::Other, || FUNCTION)?;
        let sealed = pending
            .seal(device_key.secret())
            .context_with(Subject::Other, || {
                format!("{FUNCTION}: sealing the invite under the device key")
            })?;
        let invite = pending.invite();
        Ok((
            store.name.clone(),
            invite.to_text().to_string(),
            invite.invite_id(),
            invite.expires(),
            sealed,
        ))
    })?;
    purge_expired(FUNCTION, now)?;
    Spi::connect_mut(|client| {
        client.update(
            "INSERT INTO persist.pairing_invites (invite_id, store_name, sealed, expires) \
             VALUES ($1, $2, $3, $4)",
            None,
            &[
                invite_id.as_bytes().as_slice().into(),
                name.as_str().into(),
                sealed.as_slice().into(),
                to_sql_time(expires).into(),
            ],
        )?;
        Ok(())
    })
    .map_err(|error| spi_failed(FUNCTION, "writing persist.pairing_invites", error))?;
    Ok(code)
}

/// A row of `persist.pairing_invites`.
struct InviteRow {
    store_name: String,
    expires: u64,
    used: bool,
}

fn read_invite(invite_id: InviteId) -> Result<Option<InviteRow>, PgError> {
    Spi::connect(|client| {
        let table = client.select(
            "SELECT store_name, expires, used IS NOT NULL \
             FROM persist.pairing_invites WHERE invite_id OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[invite_id.as_bytes().as_slice().into()],
        )?;
        let Some(row) = table.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(InviteRow {
            store_name: row.get::<String>(1)?.unwrap_or_default(),
            expires: u64::try_from(row.get::<i64>(2)?.unwrap_or(0)).unwrap_or(0),
            used: row.get::<bool>(3)?.unwrap_or(false),
        }))
    })
    .map_err(|error| spi_failed("persist.admit", "reading persist.pairing_invites", error))
}

fn already_used(invite_id: InviteId) -> PgError {
    PgError::invalid(format!(
        "persist.admit: invite {invite_id} was already used; an invite admits one device, \
         so create a new invite with persist.invite()"
    ))
}

/// Claims an unused invite for one admission and returns its sealed state,
/// which it deletes.
///
/// One conditional UPDATE marks the invite used. A concurrent admit of the
/// same invite waits for the row lock, then finds it used and fails.
///
/// NOTE: the claim is part of the caller's transaction. A transaction that
/// rolls back after `persist.admit` returned its message makes the invite
/// usable again. Only a session that has the store open can do that, and
/// it could export the keyring anyway.
fn claim_invite(invite_id: InviteId, now: u64) -> Result<Vec<u8>, PgError> {
    const FUNCTION: &str = "persist.admit";
    let sealed = Spi::connect_mut(|client| {
        let claimed = client.update(
            "UPDATE persist.pairing_invites SET used = $2 \
             WHERE invite_id OPERATOR(pg_catalog.=) $1 AND used IS NULL \
               AND sealed IS NOT NULL AND expires OPERATOR(pg_catalog.>) $2 \
             RETURNING sealed",
            None,
            &[
                invite_id.as_bytes().as_slice().into(),
                to_sql_time(now).into(),
            ],
        )?;
        let Some(row) = claimed.into_iter().next() else {
            return Ok(None);
        };
        let sealed = row.get::<Vec<u8>>(1)?;
        client.update(
            "UPDATE persist.pairing_invites SET sealed = NULL \
             WHERE invite_id OPERATOR(pg_catalog.=) $1",
            None,
            &[invite_id.as_bytes().as_slice().into()],
        )?;
        Ok(sealed)
    })
    .map_err(|error| {
        spi_failed(
            FUNCTION,
            "claiming the invite in persist.pairing_invites",
            error,
        )
    })?;
    sealed.ok_or_else(|| already_used(invite_id))
}

/// Checks a response to an invite of the open store, uses the invite up and
/// returns the keyring message code.
///
/// # Errors
///
/// 22004 for a NULL response. 22023 for a damaged code, an invite that is
/// used or expired, or one of another store. 42704 for an invite this
/// database did not create, XX001 for a response that fails verification,
/// and 55000 when no store is open.
pub fn admit(response: Option<&str>) -> Result<String, PgError> {
    const FUNCTION: &str = "persist.admit";
    let text = response.ok_or_else(|| {
        PgError::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "persist.admit: argument 1 (response) is NULL; give the response code \
             PERSIST-RESPONSE-1... from persist_accept",
        )
    })?;
    let response = Response::parse(text).context_with(Subject::Other, || {
        format!("{FUNCTION}: argument 1 (response)")
    })?;

    let invite_id = response.invite_id();
    let now = now_seconds();
    let Some(row) = read_invite(invite_id)? else {
        return Err(PgError::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "{FUNCTION}: no invite {invite_id} in this database: it was created elsewhere, \
                 or it expired and was removed"
            ),
        )
        .with_hint("Create a new invite with persist.invite()."));
    };
    // The checks first, for clear errors; the claim below makes them atomic.
    let device_key = session::with_store(FUNCTION, |store, _| {
        if row.store_name != store.name {
            return Err(PgError::invalid(format!(
                "{FUNCTION}: invite {invite_id} is for store {:?}, but store {:?} is open",
                row.store_name, store.name
            )));
        }
        if row.used {
            return Err(already_used(invite_id));
        }
        if now >= row.expires {
            return Err(PgError::core(
                FUNCTION,
                Subject::Other,
                persist_core::Error::InviteExpired {
                    invite_id,
                    expires: row.expires,
                },
            ));
        }
        device_key_of(FUNCTION, store)
    })?;

    // Claimed before admitting: an error below aborts the transaction,
    // which rolls the claim back.
    let sealed = claim_invite(invite_id, now)?;
    let message = session::with_store(FUNCTION, |store, _| {
        let pending = PendingInvite::unseal(device_key.secret(), &sealed).context_with(
            Subject::StoredMetadata,
            || {
                format!(
                    "{FUNCTION}: invite {invite_id} cannot be opened with the device key in {}",
                    device_key.location()
                )
            },
        )?;
        pending
            .admit(&response, store.cipher.keyring(), now)
            .context_with(Subject::Other, || {
                format!("{FUNCTION}: argument 1 (response)")
            })
    })?;

    purge_expired(FUNCTION, now)?;
    Ok(message.to_text())
}
