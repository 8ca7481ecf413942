#!/usr/bin/env python3
"""Check Persist's format test vectors with an independent implementation.

This script shares no code with the Rust core. It rebuilds every derivation,
associated data and layout from docs/FORMAT.md on top of Python's
`cryptography` package (AES-256-GCM, HKDF-SHA256, HMAC-SHA256, Argon2id). It
checks that each committed vector decrypts to the stated plaintext, that
re-encrypting with the vector's nonce gives the same bytes, and that every
tampered vector is rejected with the stated kind of error. The pairing
vectors are rebuilt with X25519 from the one-time secrets.

Usage: check_vectors.py [tests/vectors/format-v1.json]
Needs cryptography >= 44 (for Argon2id); scripts/test installs it in a venv.
"""

import hashlib
import hmac
import json
import math
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENVELOPE_VERSION = 1
HEADER_LEN = 1 + 4 + 12
TAG_LEN = 16
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class FormatError(Exception):
    """A vector that fails in the way its `error` field names."""

    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def lp(data: bytes) -> bytes:
    """Length-prefix a field with 4 big-endian bytes."""
    return struct.pack(">I", len(data)) + data


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def parse_keyring(data: bytes) -> dict:
    assert data[0] == 1, "keyring version"
    store_id, token, index_key = data[1:17], data[17:49], data[49:81]
    (count,) = struct.unpack(">H", data[81:83])
    keys, pos = {}, 83
    for _ in range(count):
        key_id, created, status = struct.unpack(">IQB", data[pos : pos + 13])
        keys[key_id] = {"created": created, "status": status, "key": data[pos + 13 : pos + 45]}
        pos += 45
    assert pos == len(data), "keyring has trailing bytes"
    primary = [k for k, v in keys.items() if v["status"] == 1]
    assert len(primary) == 1, "exactly one primary key"
    return {"store_id": store_id, "token": token, "index_key": index_key, "keys": keys, "primary": primary[0]}


def subkey(keyring, key_id: int, purpose: int, table: bytes) -> bytes:
    info = lp(b"persist v1 subkey") + bytes([purpose]) + lp(table)
    return hkdf(keyring["keys"][key_id]["key"], keyring["store_id"], info)


def envelope_aad(keyring, key_id, purpose, table, record_id, context) -> bytes:
    return (
        lp(b"persist v1 envelope")
        + bytes([ENVELOPE_VERSION])
        + struct.pack(">I", key_id)
        + keyring["store_id"]
        + bytes([purpose])
        + lp(table)
        + lp(record_id)
        + lp(context)
    )


def unpad(plain: bytes) -> bytes:
    stripped = plain.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise FormatError("malformed", "padding has no end marker")
    return stripped[:-1]


def open_envelope(keyring, purpose, table, record_id, context, envelope: bytes) -> bytes:
    if len(envelope) < HEADER_LEN + 1 + TAG_LEN:
        raise FormatError("malformed", f"{len(envelope)} bytes is too short")
    if envelope[0] != ENVELOPE_VERSION:
        raise FormatError("unsupported_version", f"version {envelope[0]}")
    (key_id,) = struct.unpack(">I", envelope[1:5])
    if key_id not in keyring["keys"]:
        raise FormatError("unknown_key_id", f"key {key_id}")
    key = subkey(keyring, key_id, purpose, table)
    aad = envelope_aad(keyring, key_id, purpose, table, record_id, context)
    try:
        plain = AESGCM(key).decrypt(envelope[5:HEADER_LEN], envelope[HEADER_LEN:], aad)
    except InvalidTag:
        raise FormatError("authentication_failed", "tag mismatch") from None
    return unpad(plain)


def padme(length: int) -> int:
    length = max(length, 64)
    exponent = length.bit_length() - 1
    low_bits = exponent - exponent.bit_length()
    mask = (1 << low_bits) - 1
    return (length + mask) & ~mask


def reseal(keyring, purpose, table, record_id, context, envelope: bytes, payload: bytes, padded: bool):
    """Encrypt `payload` again with the envelope's key id and nonce."""
    (key_id,) = struct.unpack(">I", envelope[1:5])
    plain = payload + b"\x80"
    if padded:
        plain += b"\x00" * (padme(len(plain)) - len(plain))
    aad = envelope_aad(keyring, key_id, purpose, table, record_id, context)
    body = AESGCM(subkey(keyring, key_id, purpose, table)).encrypt(envelope[5:HEADER_LEN], plain, aad)
    return envelope[:HEADER_LEN] + body


def read_value(data: bytes, pos: int):
    tag = data[pos]
    pos += 1
    if tag == 0:
        return {"type": "null"}, pos
    if tag == 1:
        (value,) = struct.unpack(">q", data[pos : pos + 8])
        return {"type": "integer", "value": str(value)}, pos + 8
    if tag == 2:
        return {"type": "real", "bits": data[pos : pos + 8].hex()}, pos + 8
    (length,) = struct.unpack(">I", data[pos : pos + 4])
    body = data[pos + 4 : pos + 4 + length]
    if len(body) != length:
        raise FormatError("malformed", "value truncated")
    if tag == 3:
        return {"type": "text", "value": body.decode("utf-8")}, pos + 4 + length
    if tag == 4:
        return {"type": "blob", "hex": body.hex()}, pos + 4 + length
    raise FormatError("malformed", f"unknown tag {tag}")


def encode_value(value: dict) -> bytes:
    kind = value["type"]
    if kind == "null":
        return b"\x00"
    if kind == "integer":
        return b"\x01" + struct.pack(">q", int(value["value"]))
    if kind == "real":
        bits = bytes.fromhex(value["bits"])
        number = struct.unpack(">d", bits)[0]
        # Canonical form for blind ids: integral doubles in i64 range become
        # INTEGER; NaN and the infinities stay REAL.
        if math.isfinite(number) and number == int(number) and -(2**63) <= number < 2**63:
            return b"\x01" + struct.pack(">q", int(number))
        return b"\x02" + bits
    if kind == "text":
        return b"\x03" + lp(value["value"].encode("utf-8"))
    return b"\x04" + lp(bytes.fromhex(value["hex"]))


def decode_row(data: bytes):
    assert data[0] == 1, "codec version"
    kind = {1: "row", 2: "tombstone"}[data[1]]
    (count,) = struct.unpack(">H", data[2:4])
    pos, columns = 4, []
    for _ in range(count):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        name = data[pos + 4 : pos + 4 + length].decode("utf-8")
        value, pos = read_value(data, pos + 4 + length)
        columns.append({"name": name, "value": value})
    assert pos == len(data), "row has trailing bytes"
    return kind, columns


def crockford_decode(text: str) -> bytes:
    bits, buffer, out = 0, 0, bytearray()
    for char in text.upper():
        if char.isspace() or char == "-":
            continue
        char = {"O": "0", "I": "1", "L": "1"}.get(char, char)
        buffer = (buffer << 5) | CROCKFORD.index(char)
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((buffer >> bits) & 0xFF)
    assert bits < 5, "a leftover character"
    assert buffer & ((1 << bits) - 1) == 0, "nonzero fill bits"
    return bytes(out)


def decode_text(text: str, prefix: str) -> bytes:
    """Decode a prefixed Crockford base32 code and check its checksum."""
    assert text.upper().startswith(prefix), f"no prefix {prefix}"
    payload = crockford_decode(text[len(prefix) :])
    body, checksum = payload[:-4], payload[-4:]
    if hashlib.sha256(body).digest()[:4] != checksum:
        raise FormatError("checksum", f"{prefix} checksum")
    return body


def import_export(text: str, passphrase):
    body = decode_text(text, "PERSIST-KEY-1")
    assert body[0] == 1, "export version"
    if body[1] == 0:
        return body[2:]
    assert body[1] == 1, "protection"
    memory, iterations, lanes = struct.unpack(">III", body[2:14])
    salt, nonce = body[14:30], body[30:42]
    key = Argon2id(salt=salt, length=32, iterations=iterations, lanes=lanes, memory_cost=memory).derive(
        passphrase.encode("utf-8")
    )
    return AESGCM(key).decrypt(nonce, body[42:], body[:30])


def x25519_public(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def x25519(secret: bytes, peer: bytes) -> bytes:
    """X25519 that rejects a low-order peer key, whose shared secret is zero."""
    try:
        shared = X25519PrivateKey.from_private_bytes(secret).exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:
        raise FormatError("non_contributory", "all-zero shared secret") from None
    if shared == bytes(32):
        raise FormatError("non_contributory", "all-zero shared secret")
    return shared


def pairing_transcript(invite: dict, joiner_public: bytes) -> bytes:
    """The values both devices bind into the key derivation and the MAC."""
    return (
        b"\x01"
        + invite["store_id"]
        + invite["invite_id"]
        + struct.pack(">Q", invite["expires"])
        + invite["inviter_public"]
        + joiner_public
    )


def pairing_keys(shared: bytes, one_time: bytes, transcript: bytes):
    pairing_key = hkdf(shared, one_time, lp(b"persist v1 pairing key") + transcript)
    confirm_key = hkdf(pairing_key, b"", lp(b"persist v1 pairing confirm key"))
    message_key = hkdf(pairing_key, b"", lp(b"persist v1 pairing message key"))
    return pairing_key, confirm_key, message_key


def admit(case, invite: dict, response_text: str) -> bytes:
    """Check a response as the inviter does and return the message key."""
    body = decode_text(response_text, "PERSIST-RESPONSE-1")
    assert len(body) == 81, "response length"
    assert body[0] == 1, "response version"
    assert body[1:17] == invite["invite_id"], "response invite id"
    joiner_public, mac = body[17:49], body[49:81]
    inviter_secret = bytes.fromhex(case["inviter_secret"])
    shared = x25519(inviter_secret, joiner_public)
    transcript = pairing_transcript(invite, joiner_public)
    _, confirm_key, message_key = pairing_keys(shared, invite["one_time_secret"], transcript)
    expected = hmac.new(confirm_key, lp(b"persist v1 pairing response") + transcript, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise FormatError("pairing_rejected", "confirmation MAC")
    return message_key


def open_message(invite: dict, message_key: bytes, text: str) -> bytes:
    body = decode_text(text, "PERSIST-KEYRING-1")
    assert body[0] == 1, "message version"
    assert body[1:17] == invite["invite_id"], "message invite id"
    aad = lp(b"persist v1 pairing message") + b"\x01" + invite["store_id"] + invite["invite_id"]
    try:
        return AESGCM(message_key).decrypt(body[17:29], body[29:], aad)
    except InvalidTag:
        raise FormatError("authentication_failed", "pairing message") from None


def check_pairing(case: dict, serialized: bytes) -> int:
    checked = 0
    body = decode_text(case["invite"], "PERSIST-INVITE-1")
    assert len(body) == 105, "invite length"
    assert body[0] == 1, "invite version"
    invite = {
        "store_id": body[1:17],
        "invite_id": body[17:33],
        "inviter_public": body[33:65],
        "one_time_secret": body[65:97],
        "expires": struct.unpack(">Q", body[97:105])[0],
    }
    assert invite["store_id"].hex() == case["store_id"]
    assert invite["invite_id"].hex() == case["invite_id"]
    assert invite["one_time_secret"].hex() == case["one_time_secret"]
    assert invite["expires"] == case["expires"]
    assert invite["inviter_public"] == x25519_public(bytes.fromhex(case["inviter_secret"]))
    assert invite["inviter_public"].hex() == case["inviter_public"]
    joiner_public = x25519_public(bytes.fromhex(case["joiner_secret"]))
    assert joiner_public.hex() == case["joiner_public"]
    checked += 1

    # Both sides get the same shared secret and keys.
    shared = x25519(bytes.fromhex(case["joiner_secret"]), invite["inviter_public"])
    assert shared == x25519(bytes.fromhex(case["inviter_secret"]), joiner_public)
    assert shared.hex() == case["shared_secret"]
    transcript = pairing_transcript(invite, joiner_public)
    pairing_key, confirm_key, message_key = pairing_keys(shared, invite["one_time_secret"], transcript)
    assert pairing_key.hex() == case["pairing_key"]
    assert confirm_key.hex() == case["confirm_key"]
    assert message_key.hex() == case["message_key"]
    checked += 1

    # The mailbox id comes from the one-time secret, not from the invite id alone.
    mailbox_id = hkdf(invite["one_time_secret"], b"", lp(b"persist v1 pairing mailbox id") + invite["invite_id"])[:16]
    assert mailbox_id.hex() == case["mailbox_id"]
    assert mailbox_id == HKDF(
        algorithm=hashes.SHA256(),
        length=16,
        salt=b"",
        info=lp(b"persist v1 pairing mailbox id") + invite["invite_id"],
    ).derive(invite["one_time_secret"])
    checked += 1

    assert admit(case, invite, case["response"]) == message_key
    assert decode_text(case["response"], "PERSIST-RESPONSE-1")[49:].hex() == case["response_mac"]
    checked += 1

    assert open_message(invite, message_key, case["message"]) == serialized
    aad = lp(b"persist v1 pairing message") + b"\x01" + invite["store_id"] + invite["invite_id"]
    nonce = bytes.fromhex(case["message_nonce"])
    resealed = b"\x01" + invite["invite_id"] + nonce + AESGCM(message_key).encrypt(nonce, serialized, aad)
    assert resealed == decode_text(case["message"], "PERSIST-KEYRING-1"), "message reseal"
    checked += 1

    for tampered in case["tampered"]:
        try:
            if "response" in tampered:
                admit(case, invite, tampered["response"])
            elif "message" in tampered:
                open_message(invite, message_key, tampered["message"])
            else:
                decode_text(tampered["invite"], "PERSIST-INVITE-1")
        except FormatError as err:
            assert err.kind == tampered["error"], f"{tampered['name']}: got {err.kind}, expected {tampered['error']}"
        else:
            raise AssertionError(f"tampered pairing vector {tampered['name']!r} was accepted")
        checked += 1
    return checked


def check(vectors: dict) -> int:
    checked = 0
    serialized = bytes.fromhex(vectors["keyring"]["serialized"])
    keyring = parse_keyring(serialized)
    assert keyring["store_id"].hex() == vectors["keyring"]["store_id"]
    assert keyring["index_key"].hex() == vectors["keyring"]["index_key"]
    assert keyring["token"].hex() == vectors["keyring"]["write_token"]
    statuses = {1: "primary", 2: "active"}
    for key in vectors["keyring"]["keys"]:
        parsed = keyring["keys"][key["id"]]
        assert parsed["key"].hex() == key["key"], key["id"]
        assert parsed["created"] == key["created"], key["id"]
        assert statuses[parsed["status"]] == key["status"], key["id"]

    for case in vectors["envelopes"]:
        args = (case["purpose"], case["table"].encode(), bytes.fromhex(case["record_id"]), bytes.fromhex(case["context"]))
        envelope = bytes.fromhex(case["envelope"])
        plain = open_envelope(keyring, *args, envelope)
        assert plain.hex() == case["plaintext"], case["name"]
        assert reseal(keyring, *args, envelope, plain, case["padded"]) == envelope, case["name"]
        checked += 1

    for case in vectors["tampered_envelopes"]:
        args = (case["purpose"], case["table"].encode(), bytes.fromhex(case["record_id"]), bytes.fromhex(case["context"]))
        try:
            open_envelope(keyring, *args, bytes.fromhex(case["envelope"]))
        except FormatError as err:
            assert err.kind == case["error"], f"{case['name']}: got {err.kind}, expected {case['error']}"
        else:
            raise AssertionError(f"tampered vector {case['name']!r} was accepted")
        checked += 1

    sync = vectors["sync_record"]
    context = struct.pack(">Q", int(sync["clock"])) + bytes.fromhex(sync["device"])
    payload = open_envelope(keyring, 3, b"", bytes.fromhex(sync["record_id"]), context, bytes.fromhex(sync["envelope"]))
    assert payload[0] == 1
    (table_len,) = struct.unpack(">I", payload[1:5])
    assert payload[5 : 5 + table_len].decode() == sync["table"]
    assert payload[5 + table_len :].hex() == sync["row"]
    envelope = bytes.fromhex(sync["envelope"])
    assert reseal(keyring, 3, b"", bytes.fromhex(sync["record_id"]), context, envelope, payload, True) == envelope
    checked += 1

    for case in vectors["blind_ids"]:
        message = lp(b"persist v1 record id") + keyring["store_id"] + lp(case["table"].encode())
        message += struct.pack(">H", len(case["key"])) + b"".join(encode_value(v) for v in case["key"])
        record_id = hmac.new(keyring["index_key"], message, hashlib.sha256).digest()[:16]
        assert record_id.hex() == case["record_id"], case
        checked += 1

    for case in vectors["row_codec"]:
        kind, columns = decode_row(bytes.fromhex(case["encoded"]))
        assert kind == case["kind"], case["name"]
        assert columns == case["columns"], case["name"]
        checked += 1

    sealed_case = vectors["sealed_keyring"]
    sealed = bytes.fromhex(sealed_case["sealed"])
    assert sealed[0] == 1, "sealed keyring version"
    assert sealed[1:17] == keyring["store_id"], "sealed keyring store id"
    seal_key = hkdf(bytes.fromhex(sealed_case["device_key"]), b"", lp(b"persist v1 keyring seal key"))
    aad = lp(b"persist v1 sealed keyring") + sealed[:17]
    assert AESGCM(seal_key).decrypt(sealed[17:29], sealed[29:], aad) == serialized
    checked += 1

    for case in vectors["exports"]:
        assert import_export(case["text"], case["passphrase"]) == serialized, case["name"]
        checked += 1
    try:
        import_export(vectors["exports"][1]["text"], "wrong passphrase")
    except InvalidTag:
        checked += 1
    else:
        raise AssertionError("a wrong passphrase opened the export")

    keyfile = vectors["keyfile"]
    magic, key_hex, check_hex = keyfile["text"].rstrip("\n").split(" ")
    assert magic == "persist-device-key-v1", magic
    assert key_hex == keyfile["key"], "keyfile key"
    assert hashlib.sha256(bytes.fromhex(key_hex)).digest()[:4].hex() == check_hex
    checked += 1

    for case in vectors["padding_buckets"]:
        assert padme(case["length"]) == case["bucket"], case
        checked += 1

    checked += check_pairing(vectors["pairing"], serialized)
    return checked


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("format-v1.json"))
    checked = check(json.loads(path.read_text(encoding="utf-8")))
    print(f"{path}: {checked} vectors checked with the Python cryptography package")
    return 0


if __name__ == "__main__":
    sys.exit(main())
