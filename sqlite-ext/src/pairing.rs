//! Device pairing in SQL: `persist_invite`, `persist_accept`, `persist_admit`
//! and `persist_join`.
//!
//! The device that has the store (the inviter) creates an invite. A database
//! without a store (the joiner) accepts it and returns a response. The
//! inviter admits the response and returns the keyring message, from which
//! the joiner creates the store. Response and message travel by hand (the text
//! codes) or through the sync server's mailbox ([`crate::sync::mailbox`]).
//!
//! Pending state lives in `persist_pairing`, one row per invite:
//!
//! - on the inviter, the invite and its one-time X25519 secret, sealed
//!   under the device key; once used, the sealed state is deleted and the
//!   row is kept until the expiry time so that a second use gets a clear
//!   error;
//! - on the joiner, the key that will open the message, sealed under the
//!   device key of the store name being joined, until the store is created.
//!
//! Every pairing call and sync deletes the sealed state of rows past their
//! expiry time, and the rows themselves a day later, so that until then
//! a late use gets "expired" rather than "not found".

use persist_core::device_key::{self, DeviceKey};
use persist_core::pairing::{
    self, Acceptance, DEFAULT_LIFETIME_SECS, Invite, PairingMessage, PendingInvite, Response,
};
use persist_core::{InviteId, Keyring};
use serde_json::Value as Json;

use crate::db::{Db, Step};
use crate::error::{CoreContext, ExtError};
use crate::state::{Connection, OpenStore};
use crate::store::{self, InitOptions, now_seconds, with_savepoint};
use crate::sync::conninfo::ConnInfo;
use crate::sync::mailbox::{self, MailboxAccess, Pickup};

/// Role of a row of `persist_pairing`: this database created the invite.
const INVITER: &str = "inviter";

/// Role of a row of `persist_pairing`: this database accepted the invite.
const JOINER: &str = "joiner";

/// Creates `persist_pairing` if it does not exist, deletes the sealed state
/// of rows past their expiry time, and deletes rows that expired more than
/// [`EXPIRED_ROW_KEPT_SECS`] ago.
///
/// # Errors
///
/// SQLite's errors.
pub fn prepare_table(db: Db, now: u64) -> Result<(), ExtError> {
    db.exec(
        "CREATE TABLE IF NOT EXISTS persist_pairing(
             invite_id BLOB PRIMARY KEY NOT NULL,
             role TEXT NOT NULL CHECK (role IN ('inviter', 'joiner')),
             store TEXT NOT NULL,
             sealed BLOB,
             expires INTEGER NOT NULL,
             used INTEGER)",
    )?;
    let mut wipe = db.prepare(
        "UPDATE persist_pairing SET sealed = NULL WHERE expires <= ?1 AND sealed IS NOT NULL",
    )?;
    wipe.bind_i64(1, to_sql_time(now))?;
    wipe.execute()?;
    let mut delete = db.prepare("DELETE FROM persist_pairing WHERE expires <= ?1")?;
    delete.bind_i64(1, to_sql_time(now.saturating_sub(EXPIRED_ROW_KEPT_SECS)))?;
    delete.execute()
}

/// How long a row outlives its expiry time, without its sealed state.
const EXPIRED_ROW_KEPT_SECS: u64 = 86_400;

fn expired(function: &str, invite_id: InviteId, expires: u64) -> ExtError {
    ExtError::core(
        function,
        persist_core::Error::InviteExpired { invite_id, expires },
    )
}

fn to_sql_time(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

/// Returns the store name and expiry (Unix seconds) of an invite this
/// database accepted and has not joined yet, if there is one.
///
/// # Errors
///
/// SQLite's errors.
pub fn pending_join(db: Db) -> Result<Option<(String, u64)>, ExtError> {
    if !db.has_table("persist_pairing")? {
        return Ok(None);
    }
    let mut select = db.prepare(
        "SELECT store, expires FROM persist_pairing
         WHERE role = 'joiner' AND used IS NULL AND sealed IS NOT NULL AND expires > ?1
         ORDER BY expires DESC LIMIT 1",
    )?;
    select.bind_i64(1, to_sql_time(now_seconds()))?;
    if select.step()? != Step::Row {
        return Ok(None);
    }
    Ok(Some((
        select.column_text(0),
        u64::try_from(select.column_i64(1)).unwrap_or(0),
    )))
}

/// One row of `persist_pairing`.
struct Row {
    role: String,
    store: String,
    sealed: Option<Vec<u8>>,
    expires: u64,
    used: Option<i64>,
}

fn read_row(db: Db, invite_id: InviteId) -> Result<Option<Row>, ExtError> {
    let mut select = db.prepare(
        "SELECT role, store, sealed, expires, used FROM persist_pairing WHERE invite_id = ?1",
    )?;
    select.bind_blob(1, invite_id.as_bytes())?;
    if select.step()? != Step::Row {
        return Ok(None);
    }
    Ok(Some(Row {
        role: select.column_text(0),
        store: select.column_text(1),
        sealed: (!select.column_is_null(2)).then(|| select.column_blob(2)),
        expires: u64::try_from(select.column_i64(3)).unwrap_or(0),
        used: (!select.column_is_null(4)).then(|| select.column_i64(4)),
    }))
}

fn insert_row(
    db: Db,
    invite_id: InviteId,
    role: &str,
    store: &str,
    sealed: &[u8],
    expires: u64,
) -> Result<(), ExtError> {
    let mut insert = db.prepare(
        "INSERT INTO persist_pairing(invite_id, role, store, sealed, expires, used)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
    )?;
    insert.bind_blob(1, invite_id.as_bytes())?;
    insert.bind_text(2, role)?;
    insert.bind_text(3, store)?;
    insert.bind_blob(4, sealed)?;
    insert.bind_i64(5, to_sql_time(expires))?;
    insert.execute()
}

/// Claims a pending invite of this database for one admission and
/// returns its sealed state, which it deletes. The row stays until a day
/// after the expiry time so that a second use gets a clear error.
///
/// One conditional UPDATE marks the invite used, so of two connections
/// only one gets the state. Callers run this inside a savepoint and roll it
/// back when admitting fails.
fn claim_pending(
    function: &str,
    db: Db,
    invite_id: InviteId,
    now: u64,
) -> Result<Vec<u8>, ExtError> {
    let mut claim = db.prepare(
        "UPDATE persist_pairing SET used = ?2
         WHERE invite_id = ?1 AND role = 'inviter' AND used IS NULL AND sealed IS NOT NULL
           AND expires > ?2
         RETURNING sealed",
    )?;
    claim.bind_blob(1, invite_id.as_bytes())?;
    claim.bind_i64(2, to_sql_time(now))?;
    let sealed = if claim.step()? == Step::Row {
        Some(claim.column_blob(0))
    } else {
        None
    };
    drop(claim);
    let Some(sealed) = sealed else {
        return Err(unclaimable(function, db, invite_id, now)?);
    };

    let mut wipe = db.prepare("UPDATE persist_pairing SET sealed = NULL WHERE invite_id = ?1")?;
    wipe.bind_blob(1, invite_id.as_bytes())?;
    wipe.execute()?;
    Ok(sealed)
}

/// Explains why [`claim_pending`] found no pending invite `invite_id`.
fn unclaimable(
    function: &str,
    db: Db,
    invite_id: InviteId,
    now: u64,
) -> Result<ExtError, ExtError> {
    let Some(row) = read_row(db, invite_id)? else {
        return Ok(ExtError::usage(format!(
            "{function}: no invite {invite_id} in this database: it was created in another \
             database, or it expired and was removed; create a new invite with persist_invite()"
        )));
    };
    if row.role != INVITER {
        return Ok(ExtError::usage(format!(
            "{function}: invite {invite_id} was accepted in this database, not created here; \
             admit the response in the database that ran persist_invite()"
        )));
    }
    if row.used.is_some() {
        return Ok(ExtError::usage(format!(
            "{function}: invite {invite_id} was already used; an invite admits one device, \
             so create a new invite with persist_invite()"
        )));
    }
    if now >= row.expires {
        return Ok(expired(function, invite_id, row.expires));
    }
    Ok(ExtError::usage(format!(
        "{function}: invite {invite_id} has no sealed state in this database; create a new \
         invite with persist_invite()"
    )))
}

fn delete_row(db: Db, invite_id: InviteId) -> Result<(), ExtError> {
    let mut delete = db.prepare("DELETE FROM persist_pairing WHERE invite_id = ?1")?;
    delete.bind_blob(1, invite_id.as_bytes())?;
    delete.execute()
}

/// `persist_invite([options])`: creates an invite to the open store and
/// returns the invite code.
///
/// # Errors
///
/// A usage error without an open store or for bad options, and core and
/// SQLite errors.
pub fn invite(conn: &Connection, options: Option<&str>) -> Result<String, ExtError> {
    const FUNCTION: &str = "persist_invite";
    let store = conn.store()?;
    let lifetime = parse_lifetime(options)?;
    let now = now_seconds();
    let db = conn.db;
    prepare_table(db, now)?;

    let pending = PendingInvite::create(store.cipher.store_id(), now, lifetime)
        .context_with(|| format!("{FUNCTION}: option \"lifetime\""))?;
    let sealed = pending
        .seal(store.device_key.secret())
        .context_with(|| format!("{FUNCTION}: sealing the invite under the device key"))?;
    let invite = pending.invite();
    insert_row(
        db,
        invite.invite_id(),
        INVITER,
        &store.name,
        &sealed,
        invite.expires(),
    )?;
    Ok(invite.to_text().to_string())
}

fn parse_lifetime(options: Option<&str>) -> Result<u64, ExtError> {
    let Some(text) = options else {
        return Ok(DEFAULT_LIFETIME_SECS);
    };
    let fail = |reason: String| ExtError::usage(format!("persist_invite: options {reason}"));
    let parsed: Json = serde_json::from_str(text).map_err(|err| {
        fail(format!(
            "are not valid: {err}; expected a JSON object such as {{\"lifetime\": 600}}"
        ))
    })?;
    let Json::Object(map) = parsed else {
        return Err(fail(
            "must be a JSON object such as {\"lifetime\": 600}".into(),
        ));
    };
    let mut lifetime = DEFAULT_LIFETIME_SECS;
    for (name, value) in map {
        match name.as_str() {
            "lifetime" => {
                lifetime = value.as_u64().ok_or_else(|| {
                    fail(format!(
                        "field \"lifetime\" must be a number of seconds from {} to {}",
                        pairing::MIN_LIFETIME_SECS,
                        pairing::MAX_LIFETIME_SECS
                    ))
                })?;
            }
            _ => {
                return Err(fail(format!(
                    "field {name:?} is unknown; expected lifetime"
                )));
            }
        }
    }
    pairing::check_lifetime(lifetime)
        .context_with(|| "persist_invite: option \"lifetime\"".into())?;
    Ok(lifetime)
}

/// Parses the options of `persist_accept` and `persist_join`: the device
/// key options and `server`, a connection string for the online path.
fn parse_device_options(
    function: &str,
    text: Option<&str>,
) -> Result<(InitOptions, Option<ConnInfo>), ExtError> {
    let (options, extra) =
        InitOptions::parse_for(function, text.unwrap_or("{}"), false, &["server"])?;
    let mut server = None;
    for (_, value) in extra {
        let conninfo = value.as_str().ok_or_else(|| {
            ExtError::usage(format!(
                "{function}: options field \"server\" must be a string (a libpq connection \
                 string or postgresql:// URI)"
            ))
        })?;
        // The parser's messages name persist_sync, its usual caller.
        let parsed = ConnInfo::parse(conninfo).map_err(|err| match err {
            ExtError::Usage(message) => ExtError::usage(format!(
                "{function}: options field \"server\": {}",
                message.strip_prefix("persist_sync: ").unwrap_or(&message)
            )),
            other => other,
        })?;
        server = Some(parsed);
    }
    Ok((options, server))
}

fn load_device_key(
    function: &str,
    name: &str,
    options: &InitOptions,
    create: bool,
) -> Result<DeviceKey, ExtError> {
    device_key::load_or_create(name, &options.key_source(), create).context_with(|| {
        if create {
            format!("{function}: the device key of store {name:?}")
        } else {
            // Join opens what accept sealed, so it needs the same key.
            format!(
                "{function}: the device key of store {name:?}, which must be the one \
                 persist_accept used (give the same keyfile or keychain options)"
            )
        }
    })
}

fn check_no_store(conn: &Connection, function: &str) -> Result<(), ExtError> {
    let existing = match conn.current() {
        Some(open) => Some(open.name.clone()),
        None => store::stored_name(conn.db)?,
    };
    match existing {
        Some(name) => Err(ExtError::usage(format!(
            "{function}: this database already holds store {name:?}; a database holds one \
             store, so accept the invite in a database without one (a new file)"
        ))),
        None => Ok(()),
    }
}

/// `persist_accept(store, invite [, options])`: accepts an invite in a
/// database without a store and returns the response code; with option
/// `server`, also posts the response to the sync server's mailbox.
///
/// # Errors
///
/// A usage error when the database holds a store, for an invite already
/// accepted here and for bad options; core errors for the invite code
/// (damaged, expired) and the device key; mailbox and SQLite errors.
pub fn accept(
    conn: &Connection,
    name: &str,
    invite_text: &str,
    options: Option<&str>,
) -> Result<String, ExtError> {
    const FUNCTION: &str = "persist_accept";
    device_key::check_store_name(name)
        .context_with(|| format!("{FUNCTION}: argument 1 (store)"))?;
    let (options, server) = parse_device_options(FUNCTION, options)?;
    check_no_store(conn, FUNCTION)?;
    let invite =
        Invite::parse(invite_text).context_with(|| format!("{FUNCTION}: argument 2 (invite)"))?;
    let now = now_seconds();
    let db = conn.db;
    prepare_table(db, now)?;
    if read_row(db, invite.invite_id())?.is_some() {
        return Err(ExtError::usage(format!(
            "{FUNCTION}: invite {} was already accepted in this database; finish with \
             persist_join('{name}', <keyring message>) or, through the server, \
             persist_join('{name}', NULL, '{{\"server\": \"...\"}}')",
            invite.invite_id()
        )));
    }

    let (acceptance, response) = Acceptance::accept(&invite, now)
        .context_with(|| format!("{FUNCTION}: argument 2 (invite)"))?;
    let device_key = load_device_key(FUNCTION, name, &options, true)?;
    let sealed = acceptance
        .seal(device_key.secret())
        .context_with(|| format!("{FUNCTION}: sealing the accepted invite"))?;
    with_savepoint(db, FUNCTION, || {
        insert_row(
            db,
            invite.invite_id(),
            JOINER,
            name,
            &sealed,
            invite.expires(),
        )?;
        if let Some(server) = &server {
            mailbox::post_response(
                FUNCTION,
                server,
                invite.mailbox_id(),
                &response,
                invite.expires(),
            )?;
        }
        Ok(())
    })?;
    Ok(response.to_text())
}

/// Claims a pending invite this database created (see [`claim_pending`])
/// and opens its sealed state.
fn take_pending(
    function: &str,
    db: Db,
    store: &OpenStore,
    invite_id: InviteId,
    now: u64,
) -> Result<PendingInvite, ExtError> {
    let sealed = claim_pending(function, db, invite_id, now)?;
    unseal_pending(function, store, invite_id, &sealed)
}

fn unseal_pending(
    function: &str,
    store: &OpenStore,
    invite_id: InviteId,
    sealed: &[u8],
) -> Result<PendingInvite, ExtError> {
    PendingInvite::unseal(store.device_key.secret(), sealed).context_with(|| {
        format!(
            "{function}: invite {invite_id} cannot be opened with the device key in {}",
            store.key_location
        )
    })
}

/// `persist_admit(response)`: checks a response to an invite of the open
/// store, consumes the invite and returns the keyring message code.
///
/// # Errors
///
/// A usage error without an open store, for an unknown or used invite;
/// core errors for a damaged, expired or forged response; SQLite errors.
pub fn admit(conn: &Connection, response_text: &str) -> Result<String, ExtError> {
    const FUNCTION: &str = "persist_admit";
    let store = conn.store()?;
    let response = Response::parse(response_text)
        .context_with(|| format!("{FUNCTION}: argument 1 (response)"))?;
    let db = conn.db;
    if db.in_transaction() {
        return Err(ExtError::usage(format!(
            "{FUNCTION}: admitting inside a transaction is not allowed, because a rollback \
             would make the used invite usable again after its keyring message was returned; \
             call {FUNCTION} outside BEGIN ... COMMIT"
        )));
    }
    let now = now_seconds();
    prepare_table(db, now)?;
    let invite_id = response.invite_id();
    let message = with_savepoint(db, FUNCTION, || {
        take_pending(FUNCTION, db, &store, invite_id, now)?
            .admit(&response, store.cipher.keyring(), now)
            .context_with(|| format!("{FUNCTION}: argument 1 (response)"))
    })?;
    Ok(message.to_text())
}

/// Counts and errors of admitting the responses found in the mailbox, for
/// the sync summary.
#[derive(Default)]
pub struct Admitted {
    /// Invites whose response verified and whose keyring message was posted.
    pub admitted: u64,
    /// Invites whose response failed verification; each is used up.
    pub rejected: u64,
    /// One message per rejected invite or mailbox problem, naming the
    /// invite where there is one.
    pub errors: Vec<String>,
}

/// Admits the responses to invites of the open store that wait in the
/// mailbox of the sync server `client` is connected to. A response that
/// fails verification is discarded from the mailbox and counted as
/// rejected, and its invite is used up either way. Each invite is claimed
/// in a savepoint of its own, which is released before the keyring message
/// is posted.
///
/// Only unused, unexpired invites are looked up, because the mailbox id
/// comes from the sealed state, which is deleted when an invite is used or
/// expires. A response posted to a used invite's mailbox stays there until
/// the invite expires, and `persist_join` on the joiner that posted it
/// fails with "has not admitted" until then.
/// Inside a transaction the mailbox is not read, because a rollback would
/// make a used invite usable again; `errors` says so.
///
/// # Errors
///
/// SQLite errors while listing the invites. Mailbox errors, a role without
/// EXECUTE on the mailbox functions and forged responses are recorded in
/// [`Admitted::errors`] instead, so they do not fail the sync.
pub fn admit_from_mailbox(
    client: &mut postgres::Client,
    db: Db,
    store: &OpenStore,
) -> Result<Admitted, ExtError> {
    const FUNCTION: &str = "persist_sync";
    let now = now_seconds();
    prepare_table(db, now)?;
    let mut select = db.prepare(
        "SELECT invite_id, sealed FROM persist_pairing
         WHERE role = 'inviter' AND store = ?1 AND used IS NULL AND sealed IS NOT NULL
           AND expires > ?2
         ORDER BY expires",
    )?;
    select.bind_text(1, &store.name)?;
    select.bind_i64(2, to_sql_time(now))?;
    let mut invites = Vec::new();
    while select.step()? == Step::Row {
        if let Ok(invite_id) = InviteId::from_slice(select.column_bytes(0)) {
            invites.push((invite_id, select.column_blob(1)));
        }
    }
    drop(select);

    let mut done = Admitted::default();
    if invites.is_empty() {
        return Ok(done);
    }
    if db.in_transaction() {
        done.errors.push(format!(
            "{FUNCTION}: the mailbox was not read, because this sync runs inside a transaction \
             and a rollback would make a used invite usable again; sync outside BEGIN ... \
             COMMIT to admit new devices"
        ));
        return Ok(done);
    }
    match mailbox::mailbox_access(client) {
        Ok(MailboxAccess::Usable) => {}
        // A server without the mailbox cannot hold responses, and syncing
        // with it must still work while offline invites are pending.
        Ok(MailboxAccess::Missing) => return Ok(done),
        Ok(MailboxAccess::NoPrivilege(signature)) => {
            done.errors.push(format!(
                "{FUNCTION}: the mailbox was not read, because this role lacks EXECUTE on \
                 {signature} on the sync server; GRANT EXECUTE on the persist.pairing_* \
                 functions to it"
            ));
            return Ok(done);
        }
        Err(err) => {
            done.errors.push(err.to_string());
            return Ok(done);
        }
    }

    for (invite_id, sealed) in invites {
        admit_invite(client, db, store, invite_id, &sealed, now, &mut done);
    }
    Ok(done)
}

/// Admits the response to one invite if the mailbox contains one, and records
/// the outcome in `done`. Mailbox and SQLite errors are recorded too, so
/// that one invite's failure neither fails the sync nor stops the others.
fn admit_invite(
    client: &mut postgres::Client,
    db: Db,
    store: &OpenStore,
    invite_id: InviteId,
    sealed: &[u8],
    now: u64,
    done: &mut Admitted,
) {
    const FUNCTION: &str = "persist_sync";
    // Opening the sealed state here only gives the mailbox id; the invite
    // is claimed below, once a response is waiting.
    let mailbox_id = match unseal_pending(FUNCTION, store, invite_id, sealed) {
        Ok(pending) => pending.invite().mailbox_id(),
        Err(err) => {
            done.errors.push(err.to_string());
            return;
        }
    };
    let bytes = match mailbox::get_response(client, mailbox_id) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return,
        Err(err) => {
            done.errors.push(format!("invite {invite_id}: {err}"));
            return;
        }
    };

    // The claim is kept when the response fails verification, so a forged
    // response uses the invite up. It is rolled back only when the invite
    // cannot be claimed or opened.
    let claimed = with_savepoint(db, "persist_admit", || {
        let pending = take_pending(FUNCTION, db, store, invite_id, now)?;
        Ok(admit_response(&bytes, pending, store, invite_id, now))
    });
    match claimed {
        Err(err) => done.errors.push(err.to_string()),
        Ok(Ok(message)) => match mailbox::post_message(client, mailbox_id, &message) {
            Ok(()) => done.admitted += 1,
            Err(err) => done.errors.push(format!(
                "invite {invite_id} was used up, but its keyring message was not posted: \
                 {err}; create a new invite for the device"
            )),
        },
        Ok(Err(err)) => {
            done.rejected += 1;
            done.errors.push(err.to_string());
            if let Err(discard) = mailbox::discard(FUNCTION, client, mailbox_id) {
                done.errors.push(format!("invite {invite_id}: {discard}"));
            }
        }
    }
}

/// Checks a response read from the mailbox of invite `invite_id` and seals
/// the keyring for the joiner.
fn admit_response(
    bytes: &[u8],
    pending: PendingInvite,
    store: &OpenStore,
    invite_id: InviteId,
    now: u64,
) -> Result<PairingMessage, ExtError> {
    let response = Response::from_bytes(bytes)
        .context_with(|| format!("the response to invite {invite_id}"))?;
    if response.invite_id() != invite_id {
        return Err(ExtError::usage(format!(
            "the mailbox of invite {invite_id} contains a response to invite {}",
            response.invite_id()
        )));
    }
    pending
        .admit(&response, store.cipher.keyring(), now)
        .context_with(|| format!("the response to invite {invite_id}"))
}

/// `persist_join(store, message [, options])`: creates the store from the
/// keyring message of an invite this database accepted, and opens it. With
/// a NULL message and option `server`, fetches the message from the sync
/// server's mailbox and deletes the mailbox once the store exists. A failed
/// deletion does not fail the join: the report then has `mailbox_error`.
///
/// # Errors
///
/// A usage error when the database holds a store, inside a transaction, for
/// a message to an invite not accepted here and when the mailbox has no
/// message; core errors for a damaged, expired or forged message and for
/// the device key; SQLite errors.
pub fn join(
    conn: &Connection,
    name: &str,
    message_text: Option<&str>,
    options: Option<&str>,
) -> Result<String, ExtError> {
    const FUNCTION: &str = "persist_join";
    device_key::check_store_name(name)
        .context_with(|| format!("{FUNCTION}: argument 1 (store)"))?;
    let (options, server) = parse_device_options(FUNCTION, options)?;
    check_no_store(conn, FUNCTION)?;
    let db = conn.db;
    if db.in_transaction() {
        // Checked here as well as when the store is created, so that
        // nothing is fetched from the mailbox for a call that must fail.
        return Err(ExtError::usage(format!(
            "{FUNCTION}: creating store {name:?} inside a transaction is not allowed, because a \
             rollback would discard the keys this connection goes on using; call {FUNCTION} \
             outside BEGIN ... COMMIT"
        )));
    }
    let now = now_seconds();
    prepare_table(db, now)?;

    let message = match message_text {
        Some(text) => Some(
            PairingMessage::parse(text)
                .context_with(|| format!("{FUNCTION}: argument 2 (message)"))?,
        ),
        None if server.is_none() => {
            return Err(ExtError::usage(format!(
                "{FUNCTION}: argument 2 (message) is NULL, but no server is given to fetch it \
                 from; pass the PERSIST-KEYRING-1 code, or the sync server as \
                 '{{\"server\": \"<connection string>\"}}'"
            )));
        }
        None => None,
    };
    let invite_id = match &message {
        Some(message) => message.invite_id(),
        None => accepted_invite(db, name)?,
    };
    let Some(row) = read_row(db, invite_id)?.filter(|row| row.role == JOINER) else {
        return Err(ExtError::usage(format!(
            "{FUNCTION}: this database has not accepted invite {invite_id}; the keyring \
             message is for an invite accepted in another database"
        )));
    };
    if row.store != name {
        return Err(ExtError::usage(format!(
            "{FUNCTION}: invite {invite_id} was accepted for store {:?}, not {name:?}",
            row.store
        )));
    }
    if now >= row.expires {
        return Err(expired(FUNCTION, invite_id, row.expires));
    }
    let device_key = load_device_key(FUNCTION, name, &options, false)?;
    let acceptance = Acceptance::unseal(device_key.secret(), &row.sealed.unwrap_or_default())
        .context_with(|| {
            format!(
                "{FUNCTION}: the accepted invite {invite_id} cannot be opened with the device \
                 key in {}; give the same keyfile or keychain options as to persist_accept",
                device_key.location()
            )
        })?;

    // Online, the message stays in the mailbox until the store exists, so a
    // failure below (a wrong key option, a full disk) can be retried.
    let (message, mut mailbox_client) = match (message, &server) {
        (Some(message), _) => (message, None),
        (None, Some(server)) => {
            let mut client = mailbox::connect(FUNCTION, server)?;
            let message = fetch_message(&mut client, &acceptance, invite_id)?;
            (message, Some(client))
        }
        (None, None) => {
            return Err(ExtError::usage(format!(
                "{FUNCTION}: no keyring message and no server"
            )));
        }
    };
    let keyring: Keyring = acceptance
        .open(&message, now)
        .context_with(|| format!("{FUNCTION}: the keyring message of invite {invite_id}"))?;
    let report = store::create_from_keyring(conn, FUNCTION, name, keyring, &options, |db| {
        delete_row(db, invite_id)
    })?;

    let Some(client) = mailbox_client.as_mut() else {
        return Ok(report);
    };
    match mailbox::discard(FUNCTION, client, acceptance.mailbox_id()) {
        Ok(()) => Ok(report),
        // The store exists, so the join succeeded. The ciphertext left in
        // the mailbox opens only with this device's message key, and the
        // server deletes it when the invite expires.
        Err(err) => add_report_field(&report, "mailbox_error", &err.to_string()),
    }
}

/// Fetches the keyring message of an accepted invite from the mailbox.
fn fetch_message(
    client: &mut postgres::Client,
    acceptance: &Acceptance,
    invite_id: InviteId,
) -> Result<PairingMessage, ExtError> {
    const FUNCTION: &str = "persist_join";
    match mailbox::get_message(FUNCTION, client, acceptance.mailbox_id())? {
        Pickup::Ready(bytes) => PairingMessage::from_bytes(&bytes)
            .context_with(|| format!("{FUNCTION}: the keyring message in the mailbox")),
        Pickup::Waiting => Err(ExtError::usage(format!(
            "{FUNCTION}: the inviting device has not admitted invite {invite_id} yet; \
             run persist_sync there, then call persist_join again"
        ))),
        Pickup::Missing => Err(ExtError::usage(format!(
            "{FUNCTION}: the mailbox holds nothing for invite {invite_id}: the response \
             was rejected by the inviting device, or the invite expired; ask for a new invite"
        ))),
    }
}

/// Adds a text field to a JSON report object.
fn add_report_field(report: &str, field: &str, value: &str) -> Result<String, ExtError> {
    let mut parsed: Json = serde_json::from_str(report)
        .map_err(|err| ExtError::usage(format!("persist_join: invalid report JSON: {err}")))?;
    if let Json::Object(map) = &mut parsed {
        map.insert(field.to_owned(), Json::String(value.to_owned()));
    }
    Ok(parsed.to_string())
}

/// Returns the invite this database accepted for store `name`, for the
/// online path where no message names it.
fn accepted_invite(db: Db, name: &str) -> Result<InviteId, ExtError> {
    let mut select = db.prepare(
        "SELECT invite_id FROM persist_pairing WHERE role = 'joiner' AND store = ?1
         ORDER BY expires DESC LIMIT 1",
    )?;
    select.bind_text(1, name)?;
    if select.step()? != Step::Row {
        return Err(ExtError::usage(format!(
            "persist_join: this database has accepted no invite for store {name:?}; call \
             persist_accept('{name}', <invite code>) first"
        )));
    }
    InviteId::from_slice(select.column_bytes(0))
        .context_with(|| "persist_join: persist_pairing.invite_id".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_defaults_to_one_hour() {
        assert_eq!(parse_lifetime(None).unwrap(), 3600);
        assert_eq!(parse_lifetime(Some("{}")).unwrap(), 3600);
        assert_eq!(parse_lifetime(Some(r#"{"lifetime": 60}"#)).unwrap(), 60);
    }

    #[test]
    fn lifetime_rejects_bad_values() {
        for (options, expected) in [
            ("{", "are not valid"),
            ("[]", "must be a JSON object"),
            (r#"{"lifetime": 1.5}"#, "must be a number of seconds"),
            (
                r#"{"lifetime": 86401}"#,
                "outside the allowed 60 to 86400 seconds",
            ),
            (r#"{"life": 60}"#, "\"life\" is unknown"),
        ] {
            let err = parse_lifetime(Some(options)).unwrap_err().to_string();
            assert!(err.starts_with("persist_invite: "), "{options}: {err}");
            assert!(err.contains(expected), "{options}: {err}");
        }
    }

    #[test]
    fn device_options_take_server_but_no_key() {
        let (options, server) = parse_device_options(
            "persist_join",
            Some(r#"{"keyfile": "/tmp/b.key", "server": "host=/tmp user=app dbname=sync"}"#),
        )
        .unwrap();
        assert!(options.keyfile.is_some());
        assert!(server.is_some());
        let (_, server) = parse_device_options("persist_join", None).unwrap();
        assert!(server.is_none());

        let err = parse_device_options("persist_join", Some(r#"{"key": "PERSIST-KEY-1"}"#))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "persist_join: options field \"key\" is unknown; expected one of keyfile, keychain, \
             max_drift_ms, clock_offset_ms, server"
        );
        let err = parse_device_options("persist_accept", Some(r#"{"server": true}"#))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"server\" must be a string"), "{err}");
        let err = parse_device_options("persist_accept", Some(r#"{"server": "sslmode=maybe"}"#))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("persist_accept: options field \"server\": "),
            "{err}"
        );
    }
}
