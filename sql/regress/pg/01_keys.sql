-- Keys: persist.init, the keyfile, export and import, status and close.
--
-- scripts/test-pg.sh sets persist.keyfile to <tmpdir>/keys/regress.key with
-- ALTER SYSTEM, passes the cluster's directory as the psql variable tmpdir,
-- creates <tmpdir>/fixtures/world-readable.key with mode 0644, and replaces
-- the directory's path with <tmpdir> in error messages (queries replace it
-- themselves, so that columns keep their width). Store and device ids,
-- key ids and export strings are random, so they are shown only as lengths,
-- prefixes or comparisons. After an expected error, \echo :SQLSTATE prints
-- its SQLSTATE.
CREATE EXTENSION persist;
SELECT replace(current_setting('persist.keyfile'), :'tmpdir', '<tmpdir>') AS keyfile;

-- A new store: a keyring sealed under the device key in the keyfile, which
-- is created (mode 0600, directory 0700) on first use.
SELECT r - 'store_id' - 'device_id' - 'key_location' AS report,
       replace(r->>'key_location', :'tmpdir', '<tmpdir>') AS key_location,
       length(r->>'store_id') AS store_id_digits,
       length(r->>'device_id') AS device_id_digits
FROM (SELECT persist.init('regress')::jsonb AS r) AS init;
SELECT (pg_stat_file(:'tmpdir' || '/keys/regress.key')).size AS keyfile_bytes;
SELECT name, length(store_id) AS store_id_bytes, length(device_id) AS device_id_bytes
FROM persist.stores;
SELECT store_name, length(device_key_id) AS device_key_id_bytes, length(sealed) AS sealed_bytes
FROM persist.keyslots;

-- persist.status() names the store and its keys, never key material.
SELECT s->'open' AS open, s->>'store' AS store,
       replace(s->>'key_location', :'tmpdir', '<tmpdir>') AS key_location,
       s->'session_only' AS session_only, jsonb_array_length(s->'keys') AS keys,
       s->'keys'->0->>'status' AS first_key, s->'counters' AS counters,
       (s->>'primary_key_id')::bigint = (s->'keys'->0->>'id')::bigint AS primary_listed
FROM (SELECT persist.status()::jsonb AS s) AS status;

-- close drops the keys; a second close finds nothing to close.
SELECT persist.close() AS closed;
SELECT persist.close() AS closed_again;
SELECT persist.status()::jsonb AS status;
SELECT persist.encrypt('no store');
\echo :SQLSTATE

-- Opening the store again reads the keyring from persist.keyslots.
SELECT persist.init('regress')::jsonb - 'store_id' - 'device_id' - 'key_location' AS report;
SELECT persist.decrypt(persist.encrypt('reopened')) AS round_trip;

-- Argument errors name the function and the argument.
SELECT persist.init(NULL);
\echo :SQLSTATE
SELECT persist.init('no spaces allowed');
\echo :SQLSTATE
SELECT persist.init('regress', 'not json');
\echo :SQLSTATE
SELECT persist.init('regress', '["an", "array"]');
\echo :SQLSTATE
SELECT persist.init('regress', '{"colour": "blue"}');
\echo :SQLSTATE
SELECT persist.init('regress', '{"keyfile": 7}');
\echo :SQLSTATE
SELECT persist.init('regress', '{"keychain": true}');
\echo :SQLSTATE
SELECT persist.init('regress', '{"passphrase": "alone"}');
\echo :SQLSTATE
SELECT persist.init('regress', repeat(' ', 262145));
\echo :SQLSTATE
SELECT persist.init('regress', '{"key": "PERSIST-KEY-1NOTAKEY"}');
\echo :SQLSTATE
-- A NULL options argument is the same as none.
SELECT persist.init('regress', NULL)::jsonb -> 'created' AS created;

-- Keyfile paths: absolute, outside the data directory, and private.
SELECT persist.init('regress', '{"keyfile": "keys/relative.key"}');
\echo :SQLSTATE
SELECT persist.init('regress', json_build_object('keyfile', :'tmpdir' || '/keys/../x.key')::text);
\echo :SQLSTATE
SELECT persist.init('regress',
    json_build_object('keyfile', current_setting('data_directory') || '/persist.key')::text);
\echo :SQLSTATE
SELECT pg_stat_file(current_setting('data_directory') || '/persist.key', true) IS NULL
    AS no_keyfile_in_data_directory;
SELECT persist.init('regress',
    json_build_object('keyfile', :'tmpdir' || '/fixtures/world-readable.key')::text);
\echo :SQLSTATE
-- A store that exists opens only with its device key: a missing keyfile is
-- not replaced by a new one.
SELECT persist.init('regress', json_build_object('keyfile', :'tmpdir' || '/keys/missing.key')::text);
\echo :SQLSTATE
SELECT pg_stat_file(:'tmpdir' || '/keys/missing.key', true) IS NULL AS missing_not_created;
-- A failed persist.init leaves the open store as it was.
SELECT persist.status()::jsonb ->> 'store' AS still_open;

-- Roles: only superusers choose keyfiles. A plain role uses the keyfile that
-- persist.keyfile names, once granted the metadata tables.
CREATE ROLE regress_persist_app LOGIN;
GRANT USAGE ON SCHEMA persist TO regress_persist_app;
SET ROLE regress_persist_app;
SELECT persist.init('regress');
\echo :SQLSTATE
RESET ROLE;
GRANT SELECT, INSERT, UPDATE ON persist.stores, persist.keyslots TO regress_persist_app;
SET ROLE regress_persist_app;
SELECT persist.init('regress', json_build_object('keyfile', :'tmpdir' || '/keys/regress.key')::text);
\echo :SQLSTATE
SET persist.keyfile = '/tmp/chosen-by-app.key';
\echo :SQLSTATE
SELECT replace(persist.init('regress')::jsonb ->> 'key_location', :'tmpdir', '<tmpdir>')
    AS key_location;
SELECT persist.decrypt(persist.encrypt('as a plain role')) AS round_trip;
RESET ROLE;
-- A role that sets persist.keyfile before the library is loaded in its
-- backend only creates a placeholder. The setting is superuser-only, so
-- loading the library discards the value with a warning.
\c - regress_persist_app
SET persist.keyfile = '/tmp/chosen-by-app.key';
SELECT replace(persist.init('regress')::jsonb ->> 'key_location', :'tmpdir', '<tmpdir>')
    AS key_location;
SELECT replace(current_setting('persist.keyfile'), :'tmpdir', '<tmpdir>') AS keyfile;
\c - postgres

-- Export: one line of text, raw or under a passphrase.
SELECT persist.init('regress')::jsonb -> 'created' AS created;
SELECT left(persist.export(), 13) AS raw_prefix, length(persist.export()) > 100 AS long;
SELECT persist.export() AS exported \gset
SELECT persist.export('regress passphrase') AS protected \gset
SELECT left(:'protected', 13) AS protected_prefix, :'protected' <> :'exported' AS differs;
SELECT persist.export(NULL);
\echo :SQLSTATE
SELECT persist.export('');
\echo :SQLSTATE
SELECT persist.export(repeat('p', 1025));
\echo :SQLSTATE
SELECT persist.encrypt('sealed before the import', 'ctx') AS envelope \gset

-- Without a keyfile, an imported key serves this session only and nothing
-- is written.
SET persist.keyfile = '';
SELECT persist.close() AS closed;
SELECT persist.init('regress');
\echo :SQLSTATE
SELECT persist.init('regress', json_build_object('key', :'exported')::text)::jsonb
    - 'store_id' - 'device_id' AS report;
SELECT persist.decrypt(:'envelope', 'ctx') AS decrypted;
SELECT count(*) AS keyslots FROM persist.keyslots;
SELECT persist.init('regress', json_build_object('key', :'protected')::text);
\echo :SQLSTATE
SELECT persist.init('regress',
    json_build_object('key', :'protected', 'passphrase', 'wrong passphrase')::text);
\echo :SQLSTATE
SELECT persist.init('regress',
    json_build_object('key', :'protected', 'passphrase', 'regress passphrase')::text)::jsonb
    ->> 'key_location' AS key_location;
SELECT persist.decrypt(:'envelope', 'ctx') AS decrypted;

-- With a second keyfile, the import seals the keyring under the new device
-- key, which then opens the store alone.
SELECT set_config('persist.keyfile', :'tmpdir' || '/keys/second.key', false) IS NOT NULL AS set;
SELECT r - 'store_id' - 'device_id' - 'key_location' AS report,
       replace(r->>'key_location', :'tmpdir', '<tmpdir>') AS key_location
FROM (SELECT persist.init('regress', json_build_object('key', :'exported')::text)::jsonb AS r)
    AS init;
SELECT count(*) AS keyslots FROM persist.keyslots;
SELECT persist.close() AS closed;
SELECT r - 'store_id' - 'device_id' - 'key_location' AS report,
       replace(r->>'key_location', :'tmpdir', '<tmpdir>') AS key_location
FROM (SELECT persist.init('regress')::jsonb AS r) AS init;
SELECT persist.decrypt(:'envelope', 'ctx') AS decrypted;
RESET persist.keyfile;

-- A rollback undoes a new store, so the session closes it: the keys it has
-- would seal values under a keyring that no table keeps.
BEGIN;
SELECT persist.init('rolled-back')::jsonb -> 'created' AS created;
ROLLBACK;
SELECT persist.status()::jsonb -> 'open' AS open;
SELECT persist.encrypt('after the rollback');
\echo :SQLSTATE
BEGIN;
SELECT persist.init('committed')::jsonb -> 'created' AS created;
COMMIT;
SELECT persist.status()::jsonb ->> 'store' AS store;
SELECT name FROM persist.stores ORDER BY name;

DROP OWNED BY regress_persist_app;
DROP ROLE regress_persist_app;
DROP EXTENSION persist;

-- Envelopes carry text as UTF-8, so that they match the SQLite extension's,
-- and a database in another encoding is rejected.
CREATE DATABASE regress_persist_latin1
    ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c regress_persist_latin1
CREATE EXTENSION persist;
SELECT persist.init('latin1');
\echo :SQLSTATE
\c persist_regress
DROP DATABASE regress_persist_latin1;
