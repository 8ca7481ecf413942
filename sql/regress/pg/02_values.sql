-- Values: persist.encrypt and the four decrypt functions.
--
-- Envelopes contain a random nonce, so the output shows round trips, lengths
-- and comparisons, never envelope bytes. After an expected error,
-- \echo :SQLSTATE prints its SQLSTATE.
CREATE EXTENSION persist;
SELECT persist.init('values')::jsonb -> 'created' AS created;

-- Each SQL type seals the SQLite storage class it matches, and decrypts with
-- the function that returns that type. integer and smallint seal an INTEGER
-- too; a numeric literal such as 1.5 seals a REAL.
SELECT persist.decrypt(persist.encrypt('Zoë 東京 🎵')) AS text_value,
       persist.decrypt(persist.encrypt('')) = '' AS empty_text,
       persist.decrypt_bytea(persist.encrypt('\x00ff10'::bytea)) AS bytea_value,
       persist.decrypt_bytea(persist.encrypt(''::bytea)) = ''::bytea AS empty_bytea;
SELECT persist.decrypt_bigint(persist.encrypt(9223372036854775807)) AS bigint_max,
       persist.decrypt_bigint(persist.encrypt((-9223372036854775808)::bigint)) AS bigint_min,
       persist.decrypt_bigint(persist.encrypt(42)) AS integer_value,
       persist.decrypt_bigint(persist.encrypt((-7)::smallint)) AS smallint_value;
SELECT persist.decrypt_float8(persist.encrypt(1.5)) AS numeric_literal,
       persist.decrypt_float8(persist.encrypt(0.1::float8)) AS float8_value,
       float8send(persist.decrypt_float8(persist.encrypt('-0'::float8))) AS negative_zero_bits,
       persist.decrypt_float8(persist.encrypt('NaN'::float8)) AS nan,
       persist.decrypt_float8(persist.encrypt('-Infinity'::float8)) AS negative_infinity;

-- An envelope is 33 bytes longer than its plaintext: version, key id and
-- nonce (17), the padding marker (1) and the tag (16). The plaintext of TEXT
-- 'abc' is the codec version, tag, length and bytes (1 + 1 + 4 + 3).
SELECT length(persist.encrypt('abc')) AS text_envelope_bytes,
       length(persist.encrypt(7)) AS integer_envelope_bytes,
       get_byte(persist.encrypt('abc'), 0) AS envelope_version;
-- Every envelope has its own nonce.
SELECT persist.encrypt('same') <> persist.encrypt('same') AS envelopes_differ;

-- NULL in, NULL out; a NULL context is no context, the same as ''.
SELECT persist.encrypt(NULL) IS NULL AS null_text,
       persist.encrypt(NULL::bigint, 'ctx') IS NULL AS null_bigint,
       persist.decrypt(NULL) IS NULL AS null_envelope,
       persist.decrypt_bigint(NULL, 'ctx') IS NULL AS null_envelope_bigint;
SELECT persist.decrypt(persist.encrypt('x', NULL), '') AS null_then_empty,
       persist.decrypt(persist.encrypt('x', ''), NULL) AS empty_then_null,
       persist.decrypt(persist.encrypt('x')) AS no_context;

-- The context is bound into the envelope: another context fails.
SELECT persist.encrypt('bound', 'invoice 7') AS bound \gset
SELECT persist.decrypt(:'bound', 'invoice 7') AS right_context;
SELECT persist.decrypt(:'bound', 'invoice 8');
\echo :SQLSTATE
SELECT persist.decrypt(:'bound');
\echo :SQLSTATE

-- Tampering: a flipped tag bit, a truncated envelope, another version byte.
SELECT persist.decrypt(set_byte(:'bound'::bytea, length(:'bound'::bytea) - 1,
                                get_byte(:'bound'::bytea, length(:'bound'::bytea) - 1) # 1),
                       'invoice 7');
\echo :SQLSTATE
SELECT persist.decrypt(substr(:'bound'::bytea, 1, 20), 'invoice 7');
\echo :SQLSTATE
SELECT persist.decrypt(set_byte(:'bound'::bytea, 0, 9), 'invoice 7');
\echo :SQLSTATE
SELECT persist.decrypt('not an envelope'::bytea);
\echo :SQLSTATE

-- An envelope of another store names a key id this keyring lacks. The key
-- id is random, so only the SQLSTATE is shown.
SELECT persist.init('other-store')::jsonb -> 'created' AS created;
SELECT persist.encrypt('from the other store') AS foreign_envelope \gset
SELECT persist.init('values')::jsonb -> 'created' AS created;
\set VERBOSITY sqlstate
SELECT persist.decrypt(:'foreign_envelope');
\set VERBOSITY default

-- Each decrypt function returns one type and names the one to use instead.
SELECT persist.decrypt(persist.encrypt(42));
\echo :SQLSTATE
SELECT persist.decrypt_bigint(persist.encrypt('42'));
\echo :SQLSTATE
SELECT persist.decrypt_bytea(persist.encrypt(4.2));
\echo :SQLSTATE
SELECT persist.decrypt_float8(persist.encrypt('\x42'::bytea));
\echo :SQLSTATE

-- Size limits, with the limit in the message.
SELECT persist.encrypt('x', repeat('c', 65537));
\echo :SQLSTATE
SELECT persist.decrypt('\x00'::bytea, repeat('c', 65537));
\echo :SQLSTATE
SELECT length(persist.encrypt('x', repeat('c', 65536))) AS largest_context_accepted;

-- Decrypting in a query over a table.
CREATE TABLE regress_notes (id int PRIMARY KEY, body bytea);
INSERT INTO regress_notes
SELECT i, persist.encrypt('note ' || i, 'regress_notes:' || i) FROM generate_series(1, 3) AS i;
SELECT id, persist.decrypt(body, 'regress_notes:' || id) AS body FROM regress_notes ORDER BY id;
-- A value copied to another row no longer matches its context.
SELECT persist.decrypt(body, 'regress_notes:1') FROM regress_notes WHERE id = 2;
\echo :SQLSTATE
DROP TABLE regress_notes;

-- Declared flags: encrypt is VOLATILE (random nonce), decrypt STABLE, and
-- every function that uses the session's keys is PARALLEL RESTRICTED. None
-- that takes arguments is STRICT, because each has its own NULL rule.
SELECT oid::regprocedure AS function, provolatile AS volatility, proisstrict AS strict,
       proparallel AS parallel
FROM pg_proc
WHERE pronamespace = 'persist'::regnamespace
  AND prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
ORDER BY oid::regprocedure::text;

-- The counters of this session.
SELECT persist.status()::jsonb -> 'counters' AS counters;
SELECT persist.close() AS closed;
SELECT persist.decrypt(:'bound', 'invoice 7');
\echo :SQLSTATE
DROP EXTENSION persist;
