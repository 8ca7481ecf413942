-- Encrypted tables: INSERT, UPDATE, DELETE, RETURNING, COPY FROM,
-- transactions, constraint errors and the session's store.
--
-- Constraint errors have Postgres's SQLSTATEs and wording, but no message,
-- DETAIL or CONTEXT quotes a value or a key. After an expected error,
-- \echo :SQLSTATE prints its SQLSTATE.
CREATE EXTENSION persist;
SELECT persist.init('writes')::jsonb -> 'created' AS created;

CREATE FOREIGN TABLE account (id integer NOT NULL, owner text NOT NULL, balance numeric(12,2),
                              note text)
    SERVER persist OPTIONS (primary_key 'id');
SELECT 'persist_rows.' || option_value AS rows
FROM pg_foreign_table, pg_options_to_table(ftoptions)
WHERE ftrelid = 'account'::regclass AND option_name = 'rows_table' \gset

-- INSERT and RETURNING.
INSERT INTO account VALUES (1, 'Ann', 100, NULL) RETURNING *;
INSERT INTO account (id, owner, balance) VALUES (2, 'Bob', 50), (3, 'Cy', 0)
RETURNING id, owner, balance * 2 AS doubled;
INSERT INTO account SELECT g, 'owner ' || g, g FROM generate_series(10, 14) g;
SELECT * FROM account ORDER BY id;
SELECT count(*) AS stored_rows FROM :rows;

-- UPDATE of other columns keeps the blind id; UPDATE of the primary key
-- moves the row to the new key's blind id.
UPDATE account SET balance = balance + 1 WHERE id = 1 RETURNING id, balance;
UPDATE account SET note = 'scanned' WHERE balance < 12 RETURNING id, note;
UPDATE account SET id = 4 WHERE id = 3 RETURNING *;
SELECT id, owner FROM account WHERE id IN (3, 4);
UPDATE account SET id = id + 100 WHERE id >= 10 RETURNING id;
SELECT id FROM account ORDER BY id;
SELECT count(*) AS stored_rows FROM :rows;
-- UPDATE of a row that does not exist changes nothing.
UPDATE account SET note = 'none' WHERE id = 999;
-- A row joined twice is updated once, as in a heap table, whether the join
-- looks the row up twice or reads it once.
UPDATE account SET balance = balance + 10 FROM (VALUES (1), (1)) v(x) WHERE account.id = v.x
RETURNING account.id, account.balance;
SET enable_nestloop = off;
UPDATE account SET balance = balance + 10 FROM (VALUES (1), (1)) v(x) WHERE account.id = v.x
RETURNING account.id, account.balance;
RESET enable_nestloop;

-- DELETE and RETURNING.
DELETE FROM account WHERE id = 4 RETURNING *;
DELETE FROM account WHERE id = 4 RETURNING *;
DELETE FROM account WHERE owner LIKE 'owner 1%' RETURNING id, owner;
DELETE FROM account WHERE id IN (110, 111);
SELECT * FROM account ORDER BY id;
SELECT count(*) AS stored_rows FROM :rows;

-- Data-modifying CTEs and INSERT ... SELECT from the same table.
WITH moved AS (DELETE FROM account WHERE id = 2 RETURNING *)
INSERT INTO account SELECT id + 20, owner, balance, 'moved' FROM moved RETURNING *;
INSERT INTO account SELECT id + 1000, owner, balance, 'copy' FROM account;
SELECT id, owner, note FROM account ORDER BY id;

-- NOT NULL and primary key constraints: the messages never show values.
INSERT INTO account VALUES (5, NULL, 1);
\echo :SQLSTATE
INSERT INTO account VALUES (NULL, 'nobody', 1);
\echo :SQLSTATE
UPDATE account SET owner = NULL WHERE id = 1;
\echo :SQLSTATE
INSERT INTO account VALUES (1, 'Secret Duplicate', 1);
\echo :SQLSTATE
UPDATE account SET id = 22 WHERE id = 1;
\echo :SQLSTATE
\set VERBOSITY verbose
INSERT INTO account VALUES (1, 'Secret Duplicate', 1);
\set VERBOSITY default
SELECT id, owner FROM account WHERE id IN (1, 22) ORDER BY id;
-- INSERT ... ON CONFLICT DO NOTHING skips rows whose key exists. A foreign
-- table has no unique index, so DO UPDATE and a conflict target are
-- rejected by Postgres.
INSERT INTO account VALUES (1, 'x', 1), (23, 'New', 1) ON CONFLICT DO NOTHING RETURNING id, owner;
SELECT id, owner FROM account WHERE id IN (1, 23) ORDER BY id;
INSERT INTO account VALUES (1, 'x', 1) ON CONFLICT (id) DO UPDATE SET owner = 'y';
\echo :SQLSTATE

-- Transactions and savepoints roll encrypted rows back like any rows.
BEGIN;
INSERT INTO account VALUES (50, 'Rolled back', 1);
SAVEPOINT s;
UPDATE account SET owner = 'Inner' WHERE id = 50;
DELETE FROM account WHERE id = 1;
SELECT id, owner FROM account WHERE id IN (1, 50) ORDER BY id;
ROLLBACK TO SAVEPOINT s;
SELECT id, owner FROM account WHERE id IN (1, 50) ORDER BY id;
SAVEPOINT t;
INSERT INTO account VALUES (1, 'dup', 1);
ROLLBACK TO SAVEPOINT t;
INSERT INTO account VALUES (51, 'After error', 1);
RELEASE SAVEPOINT t;
ROLLBACK;
SELECT id, owner FROM account WHERE id IN (1, 50, 51) ORDER BY id;
-- An error inside a PL/pgSQL exception block rolls back that block only.
DO $$
BEGIN
    INSERT INTO account VALUES (60, 'kept', 1);
    BEGIN
        INSERT INTO account VALUES (61, 'undone', 1);
        INSERT INTO account VALUES (1, 'dup', 1);
    EXCEPTION WHEN unique_violation THEN
        RAISE NOTICE 'caught %', SQLSTATE;
    END;
END
$$;
SELECT id, owner FROM account WHERE id IN (60, 61) ORDER BY id;

-- COPY FROM goes through the wrapper too; COPY TO needs a query. A failed
-- COPY loads nothing, and its error has no CONTEXT line, which would quote
-- the input line.
COPY account (id, owner, balance, note) FROM STDIN;
70	Copy one	7.50	\N
71	Copy two	\N	with\ttab
\.
COPY account (id, owner) FROM STDIN WITH (FORMAT csv);
72,"Copy, three"
\.
COPY account (id, owner) FROM STDIN WITH (FORMAT csv);
73,Copy four
70,Copy duplicate
\.
COPY (SELECT * FROM account WHERE id BETWEEN 70 AND 79 ORDER BY id) TO STDOUT;
SELECT count(*) AS copied FROM account WHERE id BETWEEN 70 AND 79;

-- Without an open store every statement fails, and the hint tells what to do.
SELECT persist.close() AS closed;
SELECT * FROM account WHERE id = 1;
\echo :SQLSTATE
INSERT INTO account VALUES (80, 'no store', 1);
\echo :SQLSTATE
UPDATE account SET note = 'x';
\echo :SQLSTATE
DELETE FROM account;
\echo :SQLSTATE
-- EXPLAIN plans without keys.
EXPLAIN (COSTS OFF) SELECT * FROM account WHERE id = 1;
EXPLAIN (COSTS OFF) UPDATE account SET note = 'x' WHERE id = 1;
EXPLAIN (COSTS OFF) DELETE FROM account WHERE note IS NULL;
EXPLAIN (COSTS OFF) SELECT * FROM account WHERE id = 1 FOR UPDATE;
EXPLAIN (COSTS OFF) SELECT * FROM account FOR SHARE SKIP LOCKED;

-- Another store's session cannot read or write the table; the message
-- names both store ids, shown here as <id>.
SELECT persist.init('writes-other')::jsonb -> 'created' AS created;
\set VERBOSITY sqlstate
SELECT * FROM account WHERE id = 1;
\set VERBOSITY default
SELECT regexp_replace(:'LAST_ERROR_MESSAGE', '[0-9a-f]{32}', '<id>', 'g') AS message;
\set VERBOSITY sqlstate
INSERT INTO account VALUES (81, 'other store', 1);
\set VERBOSITY default
SELECT persist.init('writes')::jsonb -> 'created' AS created;
SELECT count(*) AS accounts FROM account;

-- A session-only import of the store's key reads the table too.
SELECT persist.export() AS exported \gset
SELECT persist.close() AS closed;
SET persist.keyfile = '';
SELECT persist.init('writes', json_build_object('key', :'exported')::text)::jsonb
       -> 'session_only' AS session_only;
SELECT id, owner FROM account WHERE id = 1;
RESET persist.keyfile;
SELECT persist.init('writes')::jsonb -> 'created' AS created;

-- Opening a row counts towards persist.status() like persist.decrypt does.
SELECT (persist.status()::jsonb -> 'counters' ->> 'envelopes_opened')::bigint AS opened \gset
SELECT count(*) FROM account;
SELECT (persist.status()::jsonb -> 'counters' ->> 'envelopes_opened')::bigint - :opened
       = (SELECT count(*) FROM :rows) AS counted_every_row;

-- An encrypted table as a partition: rows are routed to it by INSERT, COPY
-- and an UPDATE that moves them in. Postgres cannot move a row out of a
-- foreign-table partition, so such an UPDATE fails with 23514 instead of
-- leaving the row in the wrong partition.
CREATE TABLE measure (region text NOT NULL, id integer NOT NULL, v text)
    PARTITION BY LIST (region);
CREATE TABLE measure_eu PARTITION OF measure FOR VALUES IN ('eu');
CREATE FOREIGN TABLE measure_us PARTITION OF measure FOR VALUES IN ('us')
    SERVER persist OPTIONS (primary_key 'id');
INSERT INTO measure VALUES ('eu', 1, 'plain'), ('us', 2, 'sealed'), ('us', 3, 'sealed too');
COPY measure FROM STDIN WITH (FORMAT csv);
us,4,copied
eu,5,plain copied
\.
UPDATE measure SET v = v || '!' WHERE id IN (2, 5) RETURNING *;
UPDATE measure SET region = 'us' WHERE id = 1 RETURNING *;
UPDATE measure SET region = 'eu' WHERE id = 4;
\echo :SQLSTATE
INSERT INTO measure_us VALUES ('eu', 6, 'wrong partition');
\echo :SQLSTATE
DELETE FROM measure WHERE id = 3 RETURNING *;
SELECT tableoid::regclass AS partition, * FROM measure ORDER BY id;
EXPLAIN (COSTS OFF) SELECT * FROM measure WHERE region = 'us' AND id = 2;
DROP TABLE measure;

-- TRUNCATE empties the rows table, and a rolled back TRUNCATE keeps it.
BEGIN;
TRUNCATE account;
SELECT count(*) AS accounts, (SELECT count(*) FROM :rows) AS stored_rows FROM account;
ROLLBACK;
SELECT count(*) AS accounts FROM account;
TRUNCATE account;
SELECT count(*) AS accounts, (SELECT count(*) FROM :rows) AS stored_rows FROM account;

DROP FOREIGN TABLE account;
DROP EXTENSION persist;
