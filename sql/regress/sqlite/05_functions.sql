-- 05_functions: persist_encrypt, persist_decrypt and persist_export.
--
-- Covers:
-- - round trips of every storage class, with and without a context;
-- - randomized encryption, and wrong and missing contexts;
-- - NULL in, NULL out, and wrong argument types and counts;
-- - 10 MB values, the 64 MiB limit and non-UTF-8 BLOBs;
-- - tampered envelopes and the error of each kind: malformed, unsupported
--   version, unknown key id, authentication failed;
-- - export with and without a passphrase, and its errors;
-- - importing an export into other database files with the "key" option
--   of persist_init.
.headers on
.nullvalue NULL
SELECT persist_init('functions') ->> '$.created' AS created;

-- Round trips: the decrypted value has the same storage class and the same
-- bytes (bits, for REAL) as the input, with no context, a TEXT context and
-- a BLOB context.
CREATE TEMP TABLE inputs(id INTEGER PRIMARY KEY, v);
INSERT INTO inputs(v) VALUES
    (0), (1), (-1), (9223372036854775807), (-9223372036854775808),
    (0.0), (-0.0), (0.1), (1.7976931348623157e308), (4.9406564584124654e-324),
    (''), ('text'), ('Zoë 日本語 😀'), ('a' || char(0) || 'b'),
    (x''), (x'00'), (x'fffe80c328'), (randomblob(1000));
CREATE TEMP VIEW round_trips AS
SELECT id, v,
       persist_decrypt(persist_encrypt(v)) AS plain,
       persist_decrypt(persist_encrypt(v, 'context'), 'context') AS with_text_context,
       persist_decrypt(persist_encrypt(v, x'00ff'), x'00ff') AS with_blob_context
FROM inputs;
SELECT id, typeof(v) AS type,
       typeof(plain) = typeof(v) AND typeof(with_text_context) = typeof(v) AND typeof(with_blob_context) = typeof(v) AS same_type,
       CASE typeof(v)
           WHEN 'real' THEN ieee754_to_blob(plain) = ieee754_to_blob(v)
                        AND ieee754_to_blob(with_text_context) = ieee754_to_blob(v)
                        AND ieee754_to_blob(with_blob_context) = ieee754_to_blob(v)
           ELSE CAST(plain AS BLOB) = CAST(v AS BLOB)
                AND CAST(with_text_context AS BLOB) = CAST(v AS BLOB)
                AND CAST(with_blob_context AS BLOB) = CAST(v AS BLOB)
       END AS same_bytes
FROM round_trips ORDER BY id;

-- An envelope is 33 bytes of header and tag, 1 byte of padding marker and
-- the encoded value (a version byte, a type byte, then 8 bytes for a
-- number or a 4-byte length and the bytes).
SELECT typeof(persist_encrypt(1)) AS type,
       length(persist_encrypt(1)) AS integer_length,
       length(persist_encrypt(1.5)) AS real_length,
       length(persist_encrypt('')) AS empty_text_length,
       length(persist_encrypt(x'')) AS empty_blob_length,
       length(persist_encrypt('abc', 'a long context is not stored')) AS context_not_stored;
-- Each call uses a fresh nonce, so equal inputs give different envelopes.
SELECT persist_encrypt('same') = persist_encrypt('same') AS envelopes_equal;
SELECT count(DISTINCT persist_encrypt(1)) AS distinct_envelopes FROM inputs;
SELECT substr(persist_encrypt(1), 1, 1) = x'01' AS version_byte_is_1;

-- NULL in, NULL out; a NULL or empty context is the same as none.
SELECT persist_encrypt(NULL) IS NULL AS encrypt_null,
       persist_encrypt(NULL, 'context') IS NULL AS encrypt_null_with_context,
       persist_decrypt(NULL) IS NULL AS decrypt_null,
       persist_decrypt(NULL, 'context') IS NULL AS decrypt_null_with_context;
SELECT persist_decrypt(persist_encrypt('v'), NULL) AS no_context_then_null,
       persist_decrypt(persist_encrypt('v', NULL)) AS null_context_then_none,
       persist_decrypt(persist_encrypt('v', ''), x'') AS empty_text_then_empty_blob,
       persist_decrypt(persist_encrypt('v', 'abc'), x'616263') AS same_bytes_as_blob;

-- A context other than the one sealed with fails authentication.
SELECT persist_decrypt(persist_encrypt('v', 'row 1'), 'row 2');
SELECT persist_decrypt(persist_encrypt('v', 'row 1'));
SELECT persist_decrypt(persist_encrypt('v'), 'row 1');
SELECT persist_decrypt(persist_encrypt('v', 'Row 1'), 'row 1');
-- Contexts up to 64 KiB are accepted.
SELECT persist_decrypt(persist_encrypt('v', zeroblob(65536)), zeroblob(65536)) AS largest_context;
SELECT persist_encrypt('v', zeroblob(65537));
SELECT persist_decrypt(persist_encrypt('v'), zeroblob(65537));

-- Wrong argument types.
SELECT persist_encrypt(1, 5);
SELECT persist_encrypt(1, 1.5);
SELECT persist_encrypt(CAST(x'ff' AS TEXT));
SELECT persist_decrypt('an envelope as text');
SELECT persist_decrypt(5);
SELECT persist_decrypt(1.5);
SELECT persist_decrypt(persist_encrypt(1), 5);

-- Wrong argument counts.
SELECT persist_encrypt();
SELECT persist_encrypt(1, 'context', 'extra');
SELECT persist_decrypt();
SELECT persist_decrypt(x'00', 'context', 'extra');
SELECT persist_export('one', 'two');
SELECT persist_status(1);
SELECT persist_close(1);
SELECT persist_version(1);

-- 10 MB values, TEXT and BLOB.
CREATE TEMP TABLE big AS SELECT randomblob(10485760) AS v, printf('%.*c', 10000000, 'x') AS t;
SELECT length(persist_encrypt(v)) AS envelope_length,
       persist_decrypt(persist_encrypt(v)) = v AS blob_round_trip,
       length(persist_decrypt(persist_encrypt(t, 'big'), 'big')) AS text_length,
       persist_decrypt(persist_encrypt(t, 'big'), 'big') = t AS text_round_trip
FROM big;
SELECT length(persist_decrypt(persist_encrypt(zeroblob(10000000)))) AS zeroblob_length;
DROP TABLE big;

-- The encoded value (6 bytes plus the bytes of a TEXT or BLOB) may be at
-- most 64 MiB = 67108864 bytes, so the largest BLOB is 67108858 bytes.
-- SQLite itself accepts longer values, as the first query shows, so the
-- extension's limit is the one that applies.
SELECT length(zeroblob(67108865)) AS sqlite_allows;
SELECT length(persist_encrypt(zeroblob(67108858))) AS largest_envelope;
SELECT persist_encrypt(zeroblob(67108859));
SELECT persist_encrypt(zeroblob(67108864));

-- Tampered envelopes. Each variant below changes one thing in a valid
-- envelope of 'secret' sealed with context 'ctx'; every one must fail with
-- the error for its kind and never return a value.
CREATE TEMP TABLE sealed AS SELECT persist_encrypt('secret', 'ctx') AS e;
SELECT persist_decrypt(e, 'ctx') AS untouched, length(e) AS length FROM sealed;
CREATE TEMP TABLE tampered(kind TEXT PRIMARY KEY, e BLOB);
INSERT INTO tampered SELECT 'ciphertext byte flipped',
    CAST(substr(e, 1, 19) || CASE WHEN substr(e, 20, 1) = x'00' THEN x'01' ELSE x'00' END || substr(e, 21) AS BLOB) FROM sealed;
INSERT INTO tampered SELECT 'nonce byte flipped',
    CAST(substr(e, 1, 9) || CASE WHEN substr(e, 10, 1) = x'00' THEN x'01' ELSE x'00' END || substr(e, 11) AS BLOB) FROM sealed;
INSERT INTO tampered SELECT 'tag byte flipped',
    CAST(substr(e, 1, length(e) - 1) || CASE WHEN substr(e, -1, 1) = x'00' THEN x'01' ELSE x'00' END AS BLOB) FROM sealed;
INSERT INTO tampered SELECT 'last byte cut off', substr(e, 1, length(e) - 1) FROM sealed;
INSERT INTO tampered SELECT 'byte appended', CAST(e || x'00' AS BLOB) FROM sealed;
INSERT INTO tampered SELECT 'cut to 33 bytes', substr(e, 1, 33) FROM sealed;
INSERT INTO tampered SELECT 'empty', x'' FROM sealed;
INSERT INTO tampered SELECT 'version byte 2', CAST(x'02' || substr(e, 2) AS BLOB) FROM sealed;
INSERT INTO tampered SELECT 'version byte 0', CAST(x'00' || substr(e, 2) AS BLOB) FROM sealed;
INSERT INTO tampered SELECT 'key id 7', CAST(x'0100000007' || substr(e, 6) AS BLOB) FROM sealed;
SELECT kind, typeof(e) AS type, length(e) AS length FROM tampered ORDER BY kind;
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'ciphertext byte flipped';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'nonce byte flipped';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'tag byte flipped';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'last byte cut off';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'byte appended';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'cut to 33 bytes';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'empty';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'version byte 2';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'version byte 0';
SELECT persist_decrypt(e, 'ctx') FROM tampered WHERE kind = 'key id 7';
-- A row envelope of an encrypted table is sealed for another purpose and
-- place, so persist_decrypt rejects it.
CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO notes VALUES (1, 'row secret');
SELECT persist_decrypt(env) FROM notes_rows;

-- Export: the raw export is the same text each time; a passphrase export
-- has a random salt and nonce, so it differs each time.
SELECT substr(persist_export(), 1, 13) AS prefix,
       persist_export() = persist_export() AS raw_is_stable,
       substr(persist_export('correct horse'), 1, 13) AS protected_prefix,
       length(persist_export('correct horse')) > length(persist_export()) AS protected_is_longer;
SELECT persist_export('pass') = persist_export('pass') AS protected_equal;
SELECT persist_export(NULL);
SELECT persist_export('');
SELECT persist_export(1);
SELECT persist_export(x'70617373');
-- Functions that create, export or drop keys, and persist_sync, cannot run
-- from a view or a trigger in the database file, which could come from an
-- attacker.
CREATE VIEW leak AS SELECT persist_export() AS key;
SELECT key FROM leak;
CREATE VIEW reinit AS SELECT persist_init('functions') AS report;
SELECT report FROM reinit;
CREATE VIEW push AS SELECT persist_sync('host=/nonexistent-socket-dir') AS summary;
SELECT summary FROM push;
CREATE TABLE log(x);
CREATE TRIGGER log_close AFTER INSERT ON log BEGIN SELECT persist_close(); END;
INSERT INTO log VALUES (1);
SELECT persist_status() ->> '$.open' AS still_open;
DROP VIEW leak;
DROP VIEW reinit;
DROP VIEW push;
DROP TRIGGER log_close;
-- SQLite exempts TEMP views and triggers, which only the application
-- itself can create.
CREATE TEMP VIEW app_export AS SELECT substr(persist_export(), 1, 13) AS prefix;
SELECT prefix FROM app_export;

-- Import: a second database opens the values and the encrypted table of
-- this one with the raw export and a device key of its own.
CREATE TABLE exports AS SELECT persist_export() AS raw, persist_export('correct horse') AS protected,
    persist_encrypt('sealed in test.db', 'ctx') AS sealed;
.open second.db
.load ./libpersist
ATTACH 'test.db' AS first;
SELECT report ->> '$.created' AS created, report ->> '$.imported' AS imported,
       report ->> '$.device_key_created' AS device_key_created, report ->> '$.key_location' AS key_location
FROM (SELECT persist_init('functions', json_object('key', (SELECT raw FROM first.exports), 'keyfile', 'keys/second.key')) AS report);
SELECT persist_status() ->> '$.store_id' = (SELECT value FROM first.persist_meta WHERE key = 'store_id') AS same_store_id;
SELECT persist_decrypt((SELECT sealed FROM first.exports), 'ctx') AS opened;
SELECT body FROM first.notes WHERE id = 1;
DETACH first;

-- A passphrase export needs its passphrase.
.open third.db
.load ./libpersist
ATTACH 'test.db' AS first;
-- A passphrase with an export that has none is rejected, not ignored.
SELECT persist_init('functions', json_object('key', (SELECT raw FROM first.exports), 'passphrase', 'correct horse', 'keyfile', 'keys/third.key'));
SELECT persist_init('functions', json_object('key', (SELECT protected FROM first.exports), 'keyfile', 'keys/third.key'));
SELECT persist_init('functions', json_object('key', (SELECT protected FROM first.exports), 'passphrase', 'wrong horse', 'keyfile', 'keys/third.key'));
SELECT count(*) AS schema_objects FROM sqlite_schema;
SELECT report ->> '$.created' AS created, report ->> '$.imported' AS imported
FROM (SELECT persist_init('functions', json_object('key', (SELECT protected FROM first.exports), 'passphrase', 'correct horse', 'keyfile', 'keys/third.key')) AS report);
SELECT persist_decrypt((SELECT sealed FROM first.exports), 'ctx') AS opened;
-- A damaged export is caught by its checksum before any key is used.
SELECT persist_close() AS closed;
SELECT persist_init('functions', json_object('key', (SELECT substr(raw, 1, 19) || CASE WHEN substr(raw, 20, 1) = 'A' THEN 'B' ELSE 'A' END || substr(raw, 21) FROM first.exports), 'keyfile', 'keys/third.key'));
SELECT persist_init('functions', json_object('key', (SELECT substr(raw, 1, 40) FROM first.exports), 'keyfile', 'keys/third.key'));
-- The export is read case-insensitively, ignoring hyphens and white space.
SELECT persist_init('functions', json_object('key', (SELECT 'PERSIST-KEY-1' || lower(substr(raw, 14, 20)) || ' -' || char(10) || lower(substr(raw, 34)) FROM first.exports), 'keyfile', 'keys/third.key')) ->> '$.imported' AS imported;
DETACH first;

-- The same file on a "new device": a new keyfile and the export open it,
-- adding a key slot; afterwards the new keyfile alone opens it.
.open test.db
.load ./libpersist
SELECT report ->> '$.created' AS created, report ->> '$.imported' AS imported, report ->> '$.device_key_created' AS device_key_created
FROM (SELECT persist_init('functions', json_object('key', (SELECT raw FROM exports), 'keyfile', 'keys/new-device.key')) AS report);
SELECT count(*) AS keyslots FROM persist_keyslot;
SELECT persist_close() AS closed;
SELECT persist_init('functions', '{"keyfile": "keys/new-device.key"}') ->> '$.imported' AS imported;
SELECT body FROM notes WHERE id = 1;
