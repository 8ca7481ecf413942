-- 09_pairing: pairing a second database with an invite, offline.
--
-- Covers, with two database files in one sqlite3 session (.open switches
-- between them, and each needs the extension loaded again):
-- - persist_invite on device A (test.db): options and their limits, the
--   invite code's prefix, and the pending invite kept sealed;
-- - persist_accept on device B (b.db, its own keyfile): argument checks,
--   wrong prefix, damaged code, a database that already holds a store, and
--   accepting the same invite twice;
-- - persist_admit on A: a code of the wrong kind, a transaction, the
--   response, and reusing it;
-- - persist_join on B: a wrong device key, a wrong store name, a
--   transaction, creating the store, and values sealed on one device
--   opening on the other;
-- - expired invites on both sides.
-- Codes are passed between the files with the CLI's writefile and
-- readfile; random values (codes, ids, times) never appear in the output.
.headers on
.nullvalue NULL

-- Device A opens its store and notes its store id.
SELECT persist_init('app') ->> '$.created' AS created;
SELECT writefile('store_id.txt', persist_status() ->> '$.store_id') > 0 AS written;

-- persist_invite needs an open store, checks its options and limits the
-- lifetime to 60 seconds ... 1 day.
SELECT persist_invite('{}', 2);
SELECT persist_invite(1);
SELECT persist_invite('[]');
SELECT persist_invite('{"ttl": 600}');
SELECT persist_invite('{"lifetime": "1h"}');
SELECT persist_invite('{"lifetime": -5}');
SELECT persist_invite('{"lifetime": 59}');
SELECT persist_invite('{"lifetime": 86401}');

-- An invite for ten minutes. Its pending state is sealed under A's device
-- key: 30 header bytes (version, kind, invite id, nonce), 137 bytes of
-- ciphertext and a 16-byte tag.
SELECT writefile('invite.txt', persist_invite('{"lifetime": 600}')) > 0 AS written;
SELECT substr(CAST(readfile('invite.txt') AS TEXT), 1, 16) AS prefix,
       length(readfile('invite.txt')) AS code_length;
SELECT role, store, length(sealed) AS sealed_bytes,
       expires - unixepoch() BETWEEN 595 AND 600 AS expires_in_ten_minutes, used
FROM persist_pairing;

-- A database that holds a store cannot accept an invite.
SELECT persist_accept('app', CAST(readfile('invite.txt') AS TEXT));

-- Device B: a new database file, and a keyfile of its own.
.open b.db
.load ./libpersist
SELECT persist_accept('app');
SELECT persist_accept('app', NULL);
SELECT persist_accept('app', x'00');
SELECT persist_accept('bad name', CAST(readfile('invite.txt') AS TEXT));
SELECT persist_accept('app', 'PERSIST-KEY-1ABCDEFGH');
SELECT persist_accept('app', 'PERSIST-INVITE-1');
SELECT persist_accept('app', 'PERSIST-INVITE-1ABCDEFGHJK#');
-- One character changed: the checksum catches it.
SELECT persist_accept('app',
    substr(CAST(readfile('invite.txt') AS TEXT), 1, 40)
    || CASE substr(CAST(readfile('invite.txt') AS TEXT), 41, 1) WHEN 'X' THEN 'Y' ELSE 'X' END
    || substr(CAST(readfile('invite.txt') AS TEXT), 42));
SELECT persist_accept('app', CAST(readfile('invite.txt') AS TEXT), '{"key": "PERSIST-KEY-1"}');
SELECT persist_accept('app', CAST(readfile('invite.txt') AS TEXT), '{"server": 5}');
SELECT persist_accept('app', CAST(readfile('invite.txt') AS TEXT), 7);

-- Accepting returns the response code; B keeps its state sealed and has
-- no store yet.
SELECT writefile('response.txt',
    persist_accept('app', CAST(readfile('invite.txt') AS TEXT), '{"keyfile": "b-keys/app.key"}'))
    > 0 AS written;
SELECT substr(CAST(readfile('response.txt') AS TEXT), 1, 18) AS prefix,
       length(readfile('response.txt')) AS code_length;
SELECT role, store, length(sealed) AS sealed_bytes, used FROM persist_pairing;
SELECT persist_status() ->> '$.open' AS open;
SELECT count(*) AS store_tables FROM sqlite_schema WHERE name = 'persist_meta';
SELECT persist_accept('app', CAST(readfile('invite.txt') AS TEXT), '{"keyfile": "b-keys/app.key"}');

-- persist_join needs the message, or a server to fetch it from.
SELECT persist_join('app');
SELECT persist_join('app', NULL);
SELECT persist_join('app', 5);
SELECT persist_join('app', CAST(readfile('response.txt') AS TEXT));
-- While the accepted invite waits for persist_join, persist_init may not
-- create another store here, under any name.
SELECT persist_init('app', '{"keyfile": "b-keys/app.key"}');
SELECT persist_init('other', '{"keyfile": "b-keys/other.key"}');
SELECT count(*) AS store_tables FROM sqlite_schema WHERE name = 'persist_meta';

-- Device A admits the response and returns the keyring message.
.open test.db
.load ./libpersist
SELECT persist_admit(CAST(readfile('response.txt') AS TEXT));
SELECT persist_init('app') ->> '$.created' AS created;
SELECT persist_admit();
SELECT persist_admit(CAST(readfile('response.txt') AS TEXT), '{}');
SELECT persist_admit(NULL);
SELECT persist_admit(CAST(readfile('invite.txt') AS TEXT));
-- Not inside a transaction, where a rollback would make the used invite
-- usable again after its keyring message was returned.
BEGIN;
SELECT persist_admit(CAST(readfile('response.txt') AS TEXT));
ROLLBACK;
SELECT used IS NULL AND sealed IS NOT NULL AS still_pending FROM persist_pairing;
SELECT writefile('message.txt', persist_admit(CAST(readfile('response.txt') AS TEXT))) > 0 AS written;
SELECT substr(CAST(readfile('message.txt') AS TEXT), 1, 17) AS prefix;
-- The invite is used up: its sealed state is gone, and a second use fails.
SELECT role, sealed IS NULL AS state_deleted, used IS NOT NULL AS used FROM persist_pairing;
SELECT persist_admit(CAST(readfile('response.txt') AS TEXT));

-- Device B creates the store from the message.
.open b.db
.load ./libpersist
SELECT persist_join('app', CAST(readfile('message.txt') AS TEXT), '{"keyfile": "b-keys/other.key"}');
SELECT persist_join('other', CAST(readfile('message.txt') AS TEXT), '{"keyfile": "b-keys/app.key"}');
SELECT persist_join('app', CAST(readfile('message.txt') AS TEXT), '{"keyfile": "b-keys/app.key", "passphrase": "x"}');
-- Creating the store inside a transaction is rejected before anything is
-- read, as in persist_init.
BEGIN;
SELECT persist_join('app', CAST(readfile('message.txt') AS TEXT), '{"keyfile": "b-keys/app.key"}');
ROLLBACK;
SELECT persist_join('app', CAST(readfile('message.txt') AS TEXT), '{"keyfile": "b-keys/app.key"}')
    ->> '$.created' AS created;
SELECT persist_status() ->> '$.store_id' = CAST(readfile('store_id.txt') AS TEXT) AS same_store_id,
       persist_status() ->> '$.key_location' LIKE 'keyfile %b-keys/app.key' AS own_keyfile;
SELECT count(*) AS pending_rows FROM persist_pairing;
SELECT persist_join('app', CAST(readfile('message.txt') AS TEXT), '{"keyfile": "b-keys/app.key"}');
SELECT persist_accept('app', CAST(readfile('invite.txt') AS TEXT));
-- A value sealed on B opens on A.
SELECT writefile('sealed.bin', persist_encrypt('sealed on B', 'note 1')) > 0 AS written;

.open test.db
.load ./libpersist
SELECT persist_init('app') ->> '$.created' AS created;
SELECT persist_decrypt(readfile('sealed.bin'), 'note 1') AS opened_on_a;

-- Expired invites. On A, an invite whose time has passed cannot be
-- admitted, and its sealed state is deleted at the next pairing call.
SELECT writefile('invite2.txt', persist_invite()) > 0 AS written;
SELECT writefile('invite3.txt', persist_invite()) > 0 AS written;
.open c.db
.load ./libpersist
SELECT writefile('response2.txt',
    persist_accept('app', CAST(readfile('invite2.txt') AS TEXT), '{"keyfile": "c-keys/app.key"}'))
    > 0 AS written;
.open d.db
.load ./libpersist
SELECT writefile('response3.txt',
    persist_accept('app', CAST(readfile('invite3.txt') AS TEXT), '{"keyfile": "d-keys/app.key"}'))
    > 0 AS written;
.open test.db
.load ./libpersist
SELECT persist_init('app') ->> '$.created' AS created;
SELECT writefile('message2.txt', persist_admit(CAST(readfile('response2.txt') AS TEXT))) > 0 AS written;
UPDATE persist_pairing SET expires = unixepoch() - 1 WHERE used IS NULL;
SELECT persist_admit(CAST(readfile('response3.txt') AS TEXT));
SELECT count(*) AS expired_states_left FROM persist_pairing WHERE used IS NULL AND sealed IS NOT NULL;

-- On the joining side, an accepted invite past its time cannot be joined,
-- even with a message the inviter made in time.
.open c.db
.load ./libpersist
UPDATE persist_pairing SET expires = unixepoch() - 1;
SELECT persist_join('app', CAST(readfile('message2.txt') AS TEXT), '{"keyfile": "c-keys/app.key"}');
SELECT count(*) AS store_tables FROM sqlite_schema WHERE name = 'persist_meta';
