//! Test vectors for `docs/FORMAT.md`.
//!
//! The vectors are built from fixed keys, nonces and salts and compared with
//! the committed file `tests/vectors/format-v1.json`, so any change to the
//! bytes Persist writes fails here first. `tests/vectors/check_vectors.py`
//! checks the same file with Python's `cryptography` package, an
//! implementation that shares no code with this one.
//!
//! To regenerate the file after an intended format change, run
//! `PERSIST_WRITE_VECTORS=1 cargo test -p persist-core vectors`.

use serde_json::{Value as Json, json};
use zeroize::Zeroizing;

use crate::codec::{self, RowKind, Value, ValueRef};
use crate::device_key::format_keyfile;
use crate::envelope::{Cipher, Location, Purpose};
use crate::error::Error;
use crate::export::{self, KdfParams};
use crate::ids::DeviceId;
use crate::keyring::Keyring;
use crate::padding::{self, Padding};
use crate::pairing::{
    self, Acceptance, EphemeralKey, INVITE_FORM, MESSAGE_FORM, PairingKeys, PairingMessage,
    PendingInvite, RESPONSE_FORM, Response,
};
use crate::secret::{Passphrase, SecretKey};
use crate::sync::{self, Version};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/format-v1.json"
);

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    crate::hex::encode_into(bytes, &mut out);
    out
}

fn counting(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn nonce(start: u8) -> [u8; 12] {
    let mut out = [0u8; 12];
    out.copy_from_slice(&counting(start, 12));
    out
}

/// Builds a keyring with an old key (id 1) and a primary key (id 0x0000abcd).
fn keyring_bytes() -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend(counting(0x00, 16));
    out.extend(counting(0x20, 32));
    out.extend(counting(0x40, 32));
    out.extend(2u16.to_be_bytes());
    out.extend(1u32.to_be_bytes());
    out.extend(1_700_000_000u64.to_be_bytes());
    out.push(2);
    out.extend(counting(0x60, 32));
    out.extend(0xabcdu32.to_be_bytes());
    out.extend(1_700_003_600u64.to_be_bytes());
    out.push(1);
    out.extend(counting(0x80, 32));
    out
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Null => json!({"type": "null"}),
        Value::Integer(v) => json!({"type": "integer", "value": v.to_string()}),
        Value::Real(v) => json!({"type": "real", "bits": format!("{:016x}", v.to_bits())}),
        Value::Text(v) => json!({"type": "text", "value": v}),
        Value::Blob(v) => json!({"type": "blob", "hex": hex(v)}),
    }
}

fn columns_json(columns: &[(&str, Value)]) -> Json {
    Json::Array(
        columns
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value_json(value)}))
            .collect(),
    )
}

fn encode(kind: RowKind, columns: &[(&str, Value)]) -> Vec<u8> {
    codec::encode_row(kind, columns.iter().map(|(n, v)| (*n, v.as_ref())))
        .unwrap()
        .to_vec()
}

/// A named row for the codec vectors.
type SampleRow = (&'static str, RowKind, Vec<(&'static str, Value)>);

/// A tampered envelope: name, bytes, table, context, record id, expected error.
type TamperCase<'a> = (&'a str, Vec<u8>, &'a str, &'a str, Vec<u8>, &'a str);

fn sample_rows() -> Vec<SampleRow> {
    vec![
        (
            "note",
            RowKind::Row,
            vec![
                ("id", Value::Integer(1)),
                ("title", Value::Text("groceries".into())),
                ("body", Value::Text("milk, eggs".into())),
            ],
        ),
        (
            "every storage class",
            RowKind::Row,
            vec![
                ("null", Value::Null),
                ("min", Value::Integer(i64::MIN)),
                ("negative_zero", Value::Real(-0.0)),
                ("pi", Value::Real(std::f64::consts::PI)),
                ("empty_text", Value::Text(String::new())),
                ("text", Value::Text("Zoë, 東京, 🎵".into())),
                ("empty_blob", Value::Blob(Vec::new())),
                ("blob", Value::Blob(vec![0x00, 0xff, 0x80])),
            ],
        ),
        (
            "tombstone",
            RowKind::Tombstone,
            vec![("id", Value::Integer(42))],
        ),
    ]
}

struct EnvelopeCase {
    name: &'static str,
    cipher_primary: u32,
    purpose: Purpose,
    table: &'static str,
    record_id: Vec<u8>,
    context: Vec<u8>,
    plaintext: Vec<u8>,
    padding: Padding,
    nonce: [u8; 12],
}

fn build() -> Json {
    let keyring_bytes = keyring_bytes();
    let keyring = Keyring::from_bytes(&keyring_bytes).unwrap();
    let cipher = Cipher::new(keyring.duplicate());
    let mut old_keyring = keyring.duplicate();
    old_keyring.promote(1).unwrap();
    let old_cipher = Cipher::new(old_keyring);

    let rows = sample_rows();
    let note = encode(rows[0].1, &rows[0].2);
    let note_id = cipher.record_id("notes", &[ValueRef::Integer(1)]);
    let customer_id = cipher.record_id("customer", &[ValueRef::Integer(5)]);

    let cases = vec![
        EnvelopeCase {
            name: "row",
            cipher_primary: 0xabcd,
            purpose: Purpose::Row,
            table: "notes",
            record_id: note_id.as_bytes().to_vec(),
            context: Vec::new(),
            plaintext: note.clone(),
            padding: Padding::None,
            nonce: nonce(0xc0),
        },
        EnvelopeCase {
            name: "row padded",
            cipher_primary: 0xabcd,
            purpose: Purpose::Row,
            table: "customer",
            record_id: customer_id.as_bytes().to_vec(),
            context: Vec::new(),
            plaintext: encode(rows[1].1, &rows[1].2),
            padding: Padding::Bucket { at_least: 0 },
            nonce: nonce(0xd0),
        },
        EnvelopeCase {
            name: "row under the older key",
            cipher_primary: 1,
            purpose: Purpose::Row,
            table: "notes",
            record_id: note_id.as_bytes().to_vec(),
            context: Vec::new(),
            plaintext: note.clone(),
            padding: Padding::None,
            nonce: nonce(0xe0),
        },
        EnvelopeCase {
            name: "text value with context",
            cipher_primary: 0xabcd,
            purpose: Purpose::Value,
            table: "",
            record_id: Vec::new(),
            context: b"invoice 7".to_vec(),
            plaintext: codec::encode_single(ValueRef::Text("Zoë"))
                .unwrap()
                .to_vec(),
            padding: Padding::None,
            nonce: nonce(0xf0),
        },
        EnvelopeCase {
            name: "integer value",
            cipher_primary: 0xabcd,
            purpose: Purpose::Value,
            table: "",
            record_id: Vec::new(),
            context: Vec::new(),
            plaintext: codec::encode_single(ValueRef::Integer(-7))
                .unwrap()
                .to_vec(),
            padding: Padding::None,
            nonce: nonce(0x10),
        },
    ];

    let mut envelopes = Vec::new();
    let mut first_envelope = Vec::new();
    for case in &cases {
        let sealer = if case.cipher_primary == 1 {
            &old_cipher
        } else {
            &cipher
        };
        let location = Location {
            purpose: case.purpose,
            table: case.table,
            record_id: &case.record_id,
            context: &case.context,
        };
        let envelope = sealer
            .seal_with_nonce(&location, &case.plaintext, case.padding, &case.nonce)
            .unwrap();
        // Every vector must open with the current keyring.
        assert_eq!(
            cipher.open(&location, &envelope).unwrap().as_slice(),
            case.plaintext.as_slice()
        );
        if first_envelope.is_empty() {
            first_envelope = envelope.clone();
        }
        envelopes.push(json!({
            "name": case.name,
            "purpose": case.purpose.to_byte(),
            "table": case.table,
            "record_id": hex(&case.record_id),
            "context": hex(&case.context),
            "plaintext": hex(&case.plaintext),
            "padded": matches!(case.padding, Padding::Bucket { .. }),
            "envelope": hex(&envelope),
        }));
    }

    let tampered = tampered_cases(&cipher, &first_envelope, note_id.as_bytes());

    let version = Version {
        clock: crate::clock::clock_value(1_700_000_123_456, 7),
        device: DeviceId(counting(0xa0, 16).try_into().unwrap()),
    };
    let sync_envelope = {
        let payload = {
            let mut payload = vec![sync::SYNC_PAYLOAD_VERSION];
            crate::primitives::put_lp(&mut payload, b"notes");
            payload.extend_from_slice(&note);
            payload
        };
        let context = version.context();
        let location = Location {
            purpose: Purpose::SyncRecord,
            table: "",
            record_id: note_id.as_bytes(),
            context: &context,
        };
        let envelope = cipher
            .seal_with_nonce(
                &location,
                &payload,
                Padding::Bucket { at_least: 0 },
                &nonce(0x30),
            )
            .unwrap();
        let record = sync::open_record(&cipher, note_id, &version, &envelope).unwrap();
        assert_eq!(record.table, "notes");
        json!({
            "record_id": hex(note_id.as_bytes()),
            "clock": version.clock.to_string(),
            "device": hex(version.device.as_bytes()),
            "table": "notes",
            "row": hex(&note),
            "envelope": hex(&envelope),
        })
    };

    let blind_ids: Vec<Json> = vec![
        ("notes", vec![Value::Integer(1)]),
        ("notes", vec![Value::Real(1.0)]),
        ("notes", vec![Value::Text("1".into())]),
        ("customer", vec![Value::Integer(5)]),
        (
            "playlist_track",
            vec![Value::Integer(1), Value::Integer(3402)],
        ),
        ("tags", vec![Value::Blob(vec![1, 2, 3]), Value::Real(2.5)]),
    ]
    .into_iter()
    .map(|(table, key)| {
        let refs: Vec<ValueRef<'_>> = key.iter().map(Value::as_ref).collect();
        json!({
            "table": table,
            "key": key.iter().map(value_json).collect::<Vec<_>>(),
            "record_id": hex(cipher.record_id(table, &refs).as_bytes()),
        })
    })
    .collect();

    let row_codec: Vec<Json> = rows
        .iter()
        .map(|(name, kind, columns)| {
            json!({
                "name": name,
                "kind": if *kind == RowKind::Row { "row" } else { "tombstone" },
                "columns": columns_json(columns),
                "encoded": hex(&encode(*kind, columns)),
            })
        })
        .collect();

    let device_key = SecretKey::from_slice(&counting(0xa0, 32)).unwrap();
    let sealed = keyring.seal_with_nonce(&device_key, &nonce(0x50)).unwrap();

    let cheap = KdfParams {
        memory_kib: 1024,
        iterations: 2,
        lanes: 2,
    };
    let passphrase = "correct horse battery staple";
    let raw_export = export::export_inner(&keyring, None, cheap, &[0; 16], &nonce(0)).unwrap();
    let salt: [u8; 16] = counting(0x70, 16).try_into().unwrap();
    let protected = export::export_inner(
        &keyring,
        Some(&Passphrase::new(passphrase)),
        cheap,
        &salt,
        &nonce(0x90),
    )
    .unwrap();

    let buckets: Vec<Json> = [1usize, 63, 64, 65, 100, 200, 1000, 1025, 70_000]
        .iter()
        .map(|len| json!({"length": len, "bucket": padding::bucket(*len)}))
        .collect();

    json!({
        "description": "Persist format version 1 test vectors; see docs/FORMAT.md",
        "keyring": {
            "serialized": hex(&keyring_bytes),
            "store_id": hex(&counting(0x00, 16)),
            "write_token": hex(&counting(0x20, 32)),
            "index_key": hex(&counting(0x40, 32)),
            "keys": [
                {"id": 1, "created": 1_700_000_000u64, "status": "active", "key": hex(&counting(0x60, 32))},
                {"id": 0xabcd, "created": 1_700_003_600u64, "status": "primary", "key": hex(&counting(0x80, 32))},
            ],
        },
        "envelopes": envelopes,
        "tampered_envelopes": tampered,
        "sync_record": sync_envelope,
        "blind_ids": blind_ids,
        "row_codec": row_codec,
        "sealed_keyring": {
            "device_key": hex(device_key.expose()),
            "sealed": hex(&sealed),
        },
        "exports": [
            {"name": "raw", "passphrase": null, "text": raw_export.as_str()},
            {"name": "passphrase", "passphrase": passphrase, "text": protected.as_str(),
             "memory_kib": cheap.memory_kib, "iterations": cheap.iterations, "lanes": cheap.lanes},
        ],
        "keyfile": {
            "key": hex(device_key.expose()),
            "text": format_keyfile(&device_key).as_str(),
        },
        "padding_buckets": buckets,
        "pairing": pairing_vectors(&keyring),
    })
}

/// Builds the pairing vectors: a joiner paired to the vector keyring's store
/// from fixed one-time secrets and a fixed nonce, with tampered copies.
fn pairing_vectors(keyring: &Keyring) -> Json {
    let secret = |start: u8| Zeroizing::new(<[u8; 32]>::try_from(counting(start, 32)).unwrap());
    let inviter_secret = secret(0xc0);
    let joiner_secret = secret(0xe0);
    let one_time_secret = SecretKey::from_slice(&counting(0x10, 32)).unwrap();
    let invite_id = crate::ids::InviteId(counting(0xb0, 16).try_into().unwrap());
    let expires = 1_700_003_600u64;
    let now = expires - 60;
    let message_nonce = nonce(0x60);

    let pending = PendingInvite::from_parts(
        keyring.store_id(),
        invite_id,
        EphemeralKey::from_bytes(&inviter_secret),
        one_time_secret.duplicate(),
        expires,
    );
    let invite_text = pending.invite().to_text();
    let pending_mailbox_id = pending.invite().mailbox_id();
    let invite = pairing::Invite::parse(&invite_text).unwrap();
    let (acceptance, response) =
        Acceptance::accept_with_secret(&invite, EphemeralKey::from_bytes(&joiner_secret)).unwrap();
    let response_text = response.to_text();

    let inviter_public = EphemeralKey::from_bytes(&inviter_secret).public();
    let joiner_public = EphemeralKey::from_bytes(&joiner_secret).public();
    let shared = EphemeralKey::from_bytes(&inviter_secret)
        .agree(&joiner_public)
        .unwrap();
    let transcript = pairing::transcript(&invite, &joiner_public);
    let pairing_key = pairing::pairing_key(&shared, &one_time_secret, &transcript);
    let keys = PairingKeys::derive(&shared, &one_time_secret, &transcript);
    let mac = keys.response_mac(&transcript);
    assert_eq!(&response.to_bytes()[1 + 16 + 32..], &mac);

    let message = pending
        .admit_with_nonce(&response, keyring, now, &message_nonce)
        .unwrap();
    let opened = acceptance.open(&message, now).unwrap();
    assert_eq!(opened.to_bytes().as_slice(), keyring.to_bytes().as_slice());
    assert!(acceptance.mailbox_id() == pending_mailbox_id);

    // Tampered copies, each with a valid checksum so that the check behind
    // it is the one that fails.
    let mut swapped = response.to_bytes();
    swapped[1 + 16..1 + 16 + 32].copy_from_slice(&EphemeralKey::from_bytes(&secret(0x50)).public());
    let mut low_order = response.to_bytes();
    low_order[1 + 16..1 + 16 + 32].fill(0);
    let mut flipped = message.as_bytes().to_vec();
    flipped[40] ^= 0x01;
    // The joiner's response to a copy of the invite whose expiry was
    // pushed an hour later.
    let mut extended = INVITE_FORM.decode(&invite_text).unwrap().to_vec();
    extended[1 + 16 + 16 + 32 + 32..].copy_from_slice(&(expires + 3600).to_be_bytes());
    let extended = pairing::Invite::parse(&INVITE_FORM.encode(&extended)).unwrap();
    let (_, late_response) =
        Acceptance::accept_with_secret(&extended, EphemeralKey::from_bytes(&joiner_secret))
            .unwrap();
    let late_response = late_response.to_bytes();
    let mut typo: Vec<char> = invite_text.chars().collect();
    let at = typo.len() - 10;
    typo[at] = if typo[at] == 'X' { 'Y' } else { 'X' };
    let typo: String = typo.into_iter().collect();

    let admit_error = |bytes: &[u8]| {
        let pending = PendingInvite::from_parts(
            keyring.store_id(),
            invite_id,
            EphemeralKey::from_bytes(&inviter_secret),
            one_time_secret.duplicate(),
            expires,
        );
        let tampered = Response::from_bytes(bytes).unwrap();
        match pending.admit_with_nonce(&tampered, keyring, now, &message_nonce) {
            Err(Error::PairingRejected { .. }) => "pairing_rejected",
            Err(Error::Invalid {
                what: "X25519 public key",
                reason,
            }) if reason.contains("low-order point") => "non_contributory",
            other => panic!("tampered response: unexpected result {other:?}"),
        }
    };
    let open_error = match acceptance.open(&PairingMessage::from_bytes(&flipped).unwrap(), now) {
        Err(Error::AuthenticationFailed { .. }) => "authentication_failed",
        other => panic!(
            "tampered message: unexpected result {:?}",
            other.map(|_| ())
        ),
    };
    assert!(matches!(
        pairing::Invite::parse(&typo),
        Err(Error::Checksum { .. })
    ));
    let tampered = json!([
        {"name": "joiner public key swapped", "response": RESPONSE_FORM.encode(&swapped).as_str(),
         "error": admit_error(&swapped)},
        {"name": "joiner public key of low order", "response": RESPONSE_FORM.encode(&low_order).as_str(),
         "error": admit_error(&low_order)},
        {"name": "invite expiry changed", "response": RESPONSE_FORM.encode(&late_response).as_str(),
         "error": admit_error(&late_response)},
        {"name": "message ciphertext bit flipped", "message": MESSAGE_FORM.encode(&flipped).as_str(),
         "error": open_error},
        {"name": "invite code mistyped", "invite": typo, "error": "checksum"},
    ]);
    // The text forms decode to the payloads the checker rebuilds.
    assert_eq!(
        INVITE_FORM.decode(&invite_text).unwrap().len(),
        1 + 16 + 16 + 32 + 32 + 8
    );

    json!({
        "store_id": hex(keyring.store_id().as_bytes()),
        "invite_id": hex(invite_id.as_bytes()),
        "expires": expires,
        "now": now,
        "inviter_secret": hex(inviter_secret.as_ref()),
        "inviter_public": hex(&inviter_public),
        "joiner_secret": hex(joiner_secret.as_ref()),
        "joiner_public": hex(&joiner_public),
        "one_time_secret": hex(one_time_secret.expose()),
        "shared_secret": hex(shared.expose()),
        "pairing_key": hex(pairing_key.expose()),
        "confirm_key": hex(keys.confirm.expose()),
        "message_key": hex(keys.message.expose()),
        "response_mac": hex(&mac),
        "message_nonce": hex(&message_nonce),
        "mailbox_id": hex(invite.mailbox_id().as_bytes()),
        "invite": invite_text.as_str(),
        "response": response_text,
        "message": message.to_text(),
        "tampered": tampered,
    })
}

/// Modified copies of the first envelope, each with the error it must give.
fn tampered_cases(cipher: &Cipher, envelope: &[u8], record_id: &[u8]) -> Vec<Json> {
    let location = Location {
        purpose: Purpose::Row,
        table: "notes",
        record_id,
        context: b"",
    };
    let mut flipped_body = envelope.to_vec();
    flipped_body[20] ^= 0x01;
    let mut flipped_tag = envelope.to_vec();
    *flipped_tag.last_mut().unwrap() ^= 0x80;
    let mut flipped_nonce = envelope.to_vec();
    flipped_nonce[6] ^= 0x10;
    let mut unknown_key = envelope.to_vec();
    unknown_key[1..5].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    let mut version_two = envelope.to_vec();
    version_two[0] = 2;
    let other_record = cipher.record_id("notes", &[ValueRef::Integer(2)]);

    let cases: Vec<TamperCase<'_>> = vec![
        (
            "ciphertext bit flipped",
            flipped_body,
            "notes",
            "",
            record_id.to_vec(),
            "authentication_failed",
        ),
        (
            "tag bit flipped",
            flipped_tag,
            "notes",
            "",
            record_id.to_vec(),
            "authentication_failed",
        ),
        (
            "nonce bit flipped",
            flipped_nonce,
            "notes",
            "",
            record_id.to_vec(),
            "authentication_failed",
        ),
        (
            "unknown key id",
            unknown_key,
            "notes",
            "",
            record_id.to_vec(),
            "unknown_key_id",
        ),
        (
            "version 2",
            version_two,
            "notes",
            "",
            record_id.to_vec(),
            "unsupported_version",
        ),
        (
            "truncated",
            envelope[..20].to_vec(),
            "notes",
            "",
            record_id.to_vec(),
            "malformed",
        ),
        (
            "tag removed",
            envelope[..envelope.len() - 16].to_vec(),
            "notes",
            "",
            record_id.to_vec(),
            "authentication_failed",
        ),
        (
            "moved to another record",
            envelope.to_vec(),
            "notes",
            "",
            other_record.as_bytes().to_vec(),
            "authentication_failed",
        ),
        (
            "moved to another table",
            envelope.to_vec(),
            "notez",
            "",
            record_id.to_vec(),
            "authentication_failed",
        ),
        (
            "given a context",
            envelope.to_vec(),
            "notes",
            "x",
            record_id.to_vec(),
            "authentication_failed",
        ),
    ];
    cases
        .into_iter()
        .map(|(name, bytes, table, context, rid, error)| {
            let at = Location {
                table,
                context: context.as_bytes(),
                record_id: &rid,
                ..location
            };
            let result = cipher.open(&at, &bytes);
            let kind = match result {
                Err(Error::AuthenticationFailed { .. }) => "authentication_failed",
                Err(Error::UnknownKeyId { .. }) => "unknown_key_id",
                Err(Error::UnsupportedVersion { .. }) => "unsupported_version",
                Err(Error::Malformed { .. }) => "malformed",
                other => panic!("{name}: unexpected result {:?}", other.map(|p| p.len())),
            };
            assert_eq!(kind, error, "{name}");
            json!({
                "name": name,
                "purpose": Purpose::Row.to_byte(),
                "table": table,
                "record_id": hex(&rid),
                "context": hex(context.as_bytes()),
                "envelope": hex(&bytes),
                "error": error,
            })
        })
        .collect()
}

#[test]
fn vectors_match_committed_file() {
    let generated = serde_json::to_string_pretty(&build()).unwrap() + "\n";
    if std::env::var_os("PERSIST_WRITE_VECTORS").is_some() {
        std::fs::write(PATH, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(PATH)
        .unwrap_or_else(|err| panic!("cannot read {PATH}: {err}; see the module docs"));
    assert!(
        committed == generated,
        "the test vectors changed; if the format change is intended, regenerate \
         them as the module docs say and update docs/FORMAT.md"
    );
}

#[test]
fn committed_exports_import() {
    let json: Json = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let keyring = Keyring::from_bytes(&keyring_bytes()).unwrap();
    for case in json["exports"].as_array().unwrap() {
        let passphrase = case["passphrase"].as_str().map(Passphrase::new);
        let imported = export::import(case["text"].as_str().unwrap(), passphrase.as_ref()).unwrap();
        assert_eq!(imported.store_id(), keyring.store_id());
        assert!(imported.primary().secret() == keyring.primary().secret());
    }
    let sealed = crate::hex::decode(json["sealed_keyring"]["sealed"].as_str().unwrap()).unwrap();
    let device_key = SecretKey::from_slice(&counting(0xa0, 32)).unwrap();
    let opened = Keyring::unseal(&device_key, &sealed).unwrap();
    assert_eq!(opened.keys().len(), 2);
}
