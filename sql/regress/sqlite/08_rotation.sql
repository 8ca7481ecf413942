-- 08_rotation: key rotation, re-encryption in batches, and retiring a key.
--
-- persist_rotate() makes a new key primary at once; rows under the old key
-- still read. persist_reencrypt(n) seals at most n old rows again per call
-- and reports what remains; persist_retire(id) removes a key only when
-- nothing uses it any more. Key ids are random, so the script compares them
-- with each other instead of printing them.
.headers on
.nullvalue NULL
SELECT persist_init('rotation') ->> '$.created' AS created;
CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT);
INSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three');
DELETE FROM notes WHERE id = 3;
CREATE TABLE first_key AS SELECT persist_status() ->> '$.primary_key_id' AS id;

-- Rotation: a new primary key; the old one stays for old rows.
SELECT persist_rotate() ->> '$.rows_to_reencrypt' AS rows_to_reencrypt;
SELECT (persist_status() ->> '$.primary_key_id') <> (SELECT id FROM first_key) AS new_primary,
       json_array_length(persist_status() ->> '$.keys') AS keys;
INSERT INTO notes VALUES (4, 'four');
SELECT id, body FROM notes ORDER BY id;
SELECT value ->> '$.status' AS status, value ->> '$.rows' AS rows
FROM json_each(persist_status() ->> '$.keys') ORDER BY value ->> '$.status';

-- The old key cannot be retired while rows use it, nor can the primary.
SELECT persist_retire((SELECT id FROM first_key));
SELECT persist_retire(persist_status() ->> '$.primary_key_id');

-- Re-encryption in batches, then nothing left; the rows read the same.
SELECT persist_reencrypt(1) ->> '$.reencrypted' AS reencrypted, persist_reencrypt(1) ->> '$.remaining' AS remaining;
SELECT persist_reencrypt() ->> '$.remaining' AS remaining;
SELECT persist_reencrypt() ->> '$.reencrypted' AS reencrypted_again;
SELECT id, body FROM notes ORDER BY id;

-- Now the old key can go; rows still read, and a new connection opens the
-- store with the keyring that lacks it.
SELECT persist_retire((SELECT id FROM first_key)) IS NOT NULL AS retired;
SELECT json_array_length(persist_status() ->> '$.keys') AS keys;
SELECT persist_retire((SELECT id FROM first_key));
.open test.db
.load ./libpersist
SELECT persist_init('rotation') ->> '$.created' AS created;
SELECT id, body FROM notes ORDER BY id;

-- Arguments and transactions.
SELECT persist_reencrypt(0);
SELECT persist_reencrypt(100001);
SELECT persist_reencrypt('ten');
SELECT persist_reencrypt(1, 2);
SELECT persist_retire(NULL);
SELECT persist_retire(-1);
SELECT persist_retire(4294967296);
SELECT persist_retire(12345);
BEGIN;
SELECT persist_rotate();
ROLLBACK;
