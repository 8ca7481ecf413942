-- 01_init: persist_init, persist_status and persist_close.
--
-- Covers:
-- - the functions before any store is open;
-- - the argument checks of persist_init: arity, NULL and wrong types,
--   invalid store names, and options that are not JSON, not an object,
--   unknown, mistyped, contradictory or given twice;
-- - creating a store and its metadata tables, and reopening it on the same
--   and on a new connection;
-- - a second persist_init with another store name, and a keyfile path;
-- - the stable fields of persist_status.
-- Random fields (store id, device id, key ids) appear only as lengths or in
-- comparisons with each other.
.headers on
.nullvalue NULL

-- Before persist_init: the status reports no open store, and every function
-- that needs a key fails with a message that names persist_init.
SELECT persist_version() GLOB '[0-9]*.[0-9]*.[0-9]*' AS version_is_semver;
SELECT persist_status() ->> '$.open' AS open,
       persist_status() ->> '$.counters.envelopes_opened' AS opened,
       persist_status() ->> '$.counters.envelopes_sealed' AS sealed;
SELECT persist_encrypt(1);
SELECT persist_decrypt(x'00');
SELECT persist_export();
CREATE VIRTUAL TABLE early USING persist(id INTEGER PRIMARY KEY);
SELECT persist_close() AS closed;
-- Nothing was created: no table and no keys directory.
SELECT count(*) AS schema_objects FROM sqlite_schema;
.shell test -e keys && echo 'keys directory exists' || echo 'no keys directory'

-- Arity and argument types.
SELECT persist_init();
SELECT persist_init('app', '{}', 'extra');
SELECT persist_init(NULL);
SELECT persist_init(1);
SELECT persist_init(1.5);
SELECT persist_init(x'617070');
SELECT persist_init('app', 5);
SELECT persist_init('app', x'7b7d');

-- Store names: 1 to 64 of letters, digits, '.', '_' and '-', not starting
-- with '.' or '-', because the name becomes a file name.
SELECT persist_init('');
SELECT persist_init('my app');
SELECT persist_init('../evil');
SELECT persist_init('a/b');
SELECT persist_init('.hidden');
SELECT persist_init('-dash');
SELECT persist_init('café');
SELECT persist_init(printf('%.65c', 'a'));

-- Options: a JSON object with known fields of the right types.
SELECT persist_init('app', '');
SELECT persist_init('app', 'keyfile=app.key');
SELECT persist_init('app', '{} trailing');
SELECT persist_init('app', '[]');
SELECT persist_init('app', '"app.key"');
SELECT persist_init('app', '{"unknown": 1}');
SELECT persist_init('app', '{"Keyfile": "app.key"}');
SELECT persist_init('app', '{"keyfile": 1}');
SELECT persist_init('app', '{"keyfile": ""}');
SELECT persist_init('app', '{"keychain": "no"}');
SELECT persist_init('app', '{"key": 1}');
SELECT persist_init('app', '{"passphrase": null}');
SELECT persist_init('app', '{"max_drift_ms": -1}');
SELECT persist_init('app', '{"max_drift_ms": "5"}');
SELECT persist_init('app', '{"clock_offset_ms": 1.5}');
SELECT persist_init('app', '{"keyfile": "app.key", "keychain": true}');
SELECT persist_init('app', '{"passphrase": "secret"}');
SELECT persist_init('app', '{"key": ""}');
SELECT persist_init('app', '{"key": "not an export"}');
SELECT persist_init('app', '{"key": "PERSIST-KEY-1AAAAAAAA"}');
-- None of the failed calls created anything.
SELECT count(*) AS schema_objects FROM sqlite_schema;
.shell test -e keys && echo 'keys directory exists' || echo 'no keys directory'

-- Creating the store: the report lists what was done. The device key goes
-- to $PERSIST_KEY_DIR/app.key because no keychain is reachable.
SELECT report ->> '$.store' AS store,
       report ->> '$.created' AS created,
       report ->> '$.imported' AS imported,
       report ->> '$.device_key_created' AS device_key_created,
       report ->> '$.key_location' AS key_location,
       report ->> '$.keys' AS keys,
       length(report ->> '$.store_id') AS store_id_length,
       length(report ->> '$.device_id') AS device_id_length
FROM (SELECT persist_init('app') AS report);
SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name;
SELECT key FROM persist_meta ORDER BY key;
SELECT value AS format FROM persist_meta WHERE key = 'format';
SELECT value AS store_name FROM persist_meta WHERE key = 'store_name';
SELECT count(*) AS keyslots, length(device_key_id) AS device_key_id_length
FROM persist_keyslot;
.shell ls keys

-- The status of the open store.
SELECT persist_status() ->> '$.open' AS open,
       persist_status() ->> '$.store' AS store,
       persist_status() ->> '$.key_location' AS key_location,
       persist_status() ->> '$.tables' AS tables,
       json_array_length(persist_status(), '$.keys') AS keys,
       persist_status() ->> '$.keys[0].status' AS key_status,
       persist_status() ->> '$.keys[0].id' = persist_status() ->> '$.primary_key_id' AS primary_is_first_key,
       persist_status() ->> '$.keys[0].sealed_this_session' AS sealed_this_session;
SELECT persist_status() ->> '$.store_id' = (SELECT value FROM persist_meta WHERE key = 'store_id') AS store_id_matches_meta,
       persist_status() ->> '$.device_id' = (SELECT value FROM persist_meta WHERE key = 'device_id') AS device_id_matches_meta;
-- The status has these fields and no key material.
SELECT group_concat(key, ', ') AS status_fields
FROM (SELECT key FROM json_each(persist_status()) ORDER BY key);
SELECT group_concat(key, ', ') AS key_fields
FROM (SELECT key FROM json_each(persist_status(), '$.keys[0]') ORDER BY key);

-- persist_init again with the same name reopens the same store.
SELECT report ->> '$.created' AS created,
       report ->> '$.device_key_created' AS device_key_created,
       report ->> '$.store_id' = (SELECT value FROM persist_meta WHERE key = 'store_id') AS same_store_id
FROM (SELECT persist_init('app') AS report);

-- Another name fails while a store is open, and the open store stays open.
SELECT persist_init('other');
SELECT persist_status() ->> '$.store' AS store;

-- After persist_close, another name still fails, because the database
-- contains store "app". Store names are case-sensitive.
SELECT persist_close() AS closed;
SELECT persist_close() AS closed_again;
SELECT persist_status() ->> '$.open' AS open;
SELECT persist_init('other');
SELECT persist_init('APP');
SELECT persist_status() ->> '$.open' AS open;
.shell ls keys
SELECT persist_init('app', '{"keychain": false}') ->> '$.created' AS created_with_keychain_false;
SELECT persist_init('app', NULL) ->> '$.created' AS created_with_null_options;
SELECT persist_init('app', '{"max_drift_ms": 0, "clock_offset_ms": -5000}') ->> '$.created' AS created_with_clock_options;

-- A new connection to the same file opens the same store with the keyfile.
.open test.db
.load ./libpersist
SELECT persist_status() ->> '$.open' AS open_before_init;
SELECT report ->> '$.created' AS created, report ->> '$.key_location' AS key_location
FROM (SELECT persist_init('app') AS report);
SELECT persist_status() ->> '$.store_id' = (SELECT value FROM persist_meta WHERE key = 'store_id') AS same_store_id;

-- An explicit keyfile path is used as given, relative to the working
-- directory, and created with mode 0600 in a new directory of mode 0700.
.open second.db
.load ./libpersist
SELECT persist_init('app', '{"keyfile": "custom/dir/app.key"}') ->> '$.key_location' AS key_location;
.shell stat -c '%a %n' custom custom/dir custom/dir/app.key
-- The same database with the default keyfile: that key did not open this
-- store, so persist_init fails instead of creating another key slot.
SELECT persist_close() AS closed;
SELECT persist_init('app');
SELECT persist_init('app', '{"keyfile": "custom/dir/app.key"}') ->> '$.created' AS created;

-- Options that name a field twice are ambiguous and must fail, because a
-- store opened with either keyfile would be a guess.
.open third.db
.load ./libpersist
SELECT persist_init('app', '{"keyfile": "first.key", "keyfile": "second.key"}');
SELECT count(*) AS schema_objects FROM sqlite_schema;
