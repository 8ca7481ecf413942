-- 03_transactions: encrypted tables inside transactions and savepoints.
--
-- Covers:
-- - BEGIN ... ROLLBACK and COMMIT;
-- - SAVEPOINT, ROLLBACK TO and RELEASE, nested;
-- - statements that fail part-way (multi-row INSERT, UPDATE of many rows,
--   INSERT ... SELECT), which must leave the table as it was;
-- - INSERT OR ROLLBACK, which ends the transaction;
-- - a transaction that writes an encrypted and a plain table together;
-- - the shadow table afterwards: one row per key, and nothing left of
--   rolled-back writes;
-- - persist_init inside a transaction, which may open a store but not
--   create one or import a key.
.headers on
.nullvalue NULL
SELECT persist_init('tx') ->> '$.created' AS created;

CREATE VIRTUAL TABLE accounts USING persist(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER);
INSERT INTO accounts VALUES (1, 'alice', 100), (2, 'bob', 50);
CREATE TEMP VIEW snapshot AS
SELECT group_concat(id || ':' || owner || ':' || ifnull(balance, 'NULL'), ' ') AS accounts
FROM (SELECT * FROM accounts ORDER BY id);
SELECT * FROM snapshot;

-- ROLLBACK undoes inserts, updates (of values and of the key) and deletes.
BEGIN;
INSERT INTO accounts VALUES (3, 'carol', 0);
UPDATE accounts SET balance = balance - 30 WHERE id = 1;
UPDATE accounts SET id = 20 WHERE id = 2;
DELETE FROM accounts WHERE id = 1;
SELECT * FROM snapshot;
ROLLBACK;
SELECT * FROM snapshot;
SELECT count(*) AS shadow_rows FROM accounts_rows;

-- COMMIT keeps them.
BEGIN;
UPDATE accounts SET balance = balance - 30 WHERE id = 1;
UPDATE accounts SET balance = balance + 30 WHERE id = 2;
COMMIT;
SELECT * FROM snapshot;

-- Savepoints: ROLLBACK TO undoes only what followed the savepoint, also
-- when nested, and the transaction goes on.
BEGIN;
INSERT INTO accounts VALUES (3, 'carol', 10);
SAVEPOINT outer_sp;
INSERT INTO accounts VALUES (4, 'dave', 20);
SAVEPOINT inner_sp;
DELETE FROM accounts WHERE id = 1;
UPDATE accounts SET owner = 'robert' WHERE id = 2;
SELECT * FROM snapshot;
ROLLBACK TO inner_sp;
SELECT * FROM snapshot;
INSERT INTO accounts VALUES (5, 'erin', 30);
RELEASE inner_sp;
ROLLBACK TO outer_sp;
SELECT * FROM snapshot;
RELEASE outer_sp;
COMMIT;
SELECT * FROM snapshot;

-- A savepoint outside BEGIN starts a transaction of its own.
SAVEPOINT lone;
UPDATE accounts SET balance = 0;
ROLLBACK TO lone;
RELEASE lone;
SELECT * FROM snapshot;

-- Statements that fail part-way change nothing, in autocommit mode and
-- inside a transaction, which stays open.
INSERT INTO accounts VALUES (10, 'x', 1), (11, NULL, 1), (12, 'z', 1);
INSERT INTO accounts VALUES (10, 'x', 1), (1, 'duplicate', 1);
UPDATE accounts SET owner = CASE WHEN id = 3 THEN NULL ELSE owner || '!' END;
UPDATE accounts SET id = 2 WHERE id = 3;
INSERT INTO accounts SELECT id + 100, CASE WHEN id = 3 THEN NULL ELSE owner END, balance FROM accounts;
SELECT * FROM snapshot;
BEGIN;
INSERT INTO accounts VALUES (6, 'frank', 60);
INSERT INTO accounts VALUES (7, 'grace', 70), (1, 'duplicate', 0);
UPDATE accounts SET owner = NULL WHERE id > 2;
SELECT * FROM snapshot;
COMMIT;
SELECT * FROM snapshot;

-- INSERT OR ROLLBACK ends the whole transaction at the conflict.
BEGIN;
INSERT INTO accounts VALUES (8, 'heidi', 80);
INSERT OR ROLLBACK INTO accounts VALUES (1, 'duplicate', 0);
SELECT * FROM snapshot;
COMMIT;

-- An encrypted and a plain table in one transaction roll back together.
CREATE TABLE audit(account INTEGER, note TEXT);
BEGIN;
INSERT INTO audit VALUES (1, 'withdraw');
UPDATE accounts SET balance = balance - 70 WHERE id = 1;
ROLLBACK;
SELECT * FROM snapshot;
SELECT count(*) AS audit_rows FROM audit;

-- A table created in a rolled-back transaction leaves no shadow tables.
BEGIN;
CREATE VIRTUAL TABLE scratch USING persist(k TEXT PRIMARY KEY, v);
INSERT INTO scratch VALUES ('a', 1);
ROLLBACK;
SELECT name FROM sqlite_schema WHERE name LIKE 'scratch%';
SELECT * FROM scratch;

-- Rolled-back writes leave nothing in the shadow table: it contains one
-- row per live key and no tombstones, because every delete and key change
-- above was rolled back.
SELECT deleted, count(*) AS shadow_rows FROM accounts_rows GROUP BY deleted ORDER BY deleted;
SELECT count(*) AS live_rows FROM accounts;

-- Creating a store or importing a key inside a transaction fails, because
-- a rollback would discard keys the connection goes on using. Opening an
-- existing store inside a transaction is allowed.
CREATE TABLE exports AS SELECT persist_export() AS raw;
.open fresh.db
.load ./libpersist
BEGIN;
SELECT persist_init('fresh');
ROLLBACK;
SAVEPOINT outer_sp;
SELECT persist_init('fresh');
ROLLBACK TO outer_sp;
RELEASE outer_sp;
SELECT count(*) AS schema_objects FROM sqlite_schema;
.open test.db
.load ./libpersist
BEGIN;
SELECT persist_init('tx', json_object('key', (SELECT raw FROM exports), 'keyfile', 'keys/other-device.key'));
SELECT persist_init('tx') ->> '$.created' AS created;
SELECT count(*) AS live_rows FROM accounts;
COMMIT;
SELECT count(*) AS keyslots FROM persist_keyslot;
