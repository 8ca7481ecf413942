-- 02_crud: INSERT, UPDATE and DELETE on encrypted tables.
--
-- Every statement runs on an encrypted table and on a plain SQLite table
-- with the same declaration. The view *_diff lists the rows that differ,
-- comparing quote() of each column so that the storage class counts.
-- SQLite itself is the reference: each "differences" count must be 0.
--
-- Covers:
-- - single-row, multi-row and INSERT ... SELECT inserts;
-- - INTEGER PRIMARY KEY auto-assignment;
-- - UPDATE of values and of the primary key, and DELETE;
-- - INSERT OR REPLACE / IGNORE / FAIL / ABORT, UPDATE OR REPLACE / IGNORE;
-- - NOT NULL and UNIQUE errors in SQLite's wording;
-- - composite keys and tables without a primary key;
-- - type affinity: '5' into INTEGER, 5 into TEXT, 1.0 into INTEGER, REAL
--   and NUMERIC, and more;
-- - REAL bits including -0.0, empty text, empty blob and NULL, and
--   non-ASCII text.
.headers on
.nullvalue NULL
SELECT persist_init('crud') ->> '$.created' AS created;

CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT);
CREATE TABLE plain_notes(id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT);
CREATE TEMP VIEW notes_diff AS
SELECT 'encrypted only' AS side, * FROM (
    SELECT quote(id), quote(title), quote(body) FROM notes
    EXCEPT SELECT quote(id), quote(title), quote(body) FROM plain_notes)
UNION ALL
SELECT 'plain only', * FROM (
    SELECT quote(id), quote(title), quote(body) FROM plain_notes
    EXCEPT SELECT quote(id), quote(title), quote(body) FROM notes);

-- Inserts: one row, several rows, omitted columns, INSERT ... SELECT, and
-- INTEGER PRIMARY KEY values assigned for NULL and for an omitted key.
INSERT INTO notes VALUES (1, 'first', 'body one');
INSERT INTO plain_notes VALUES (1, 'first', 'body one');
INSERT INTO notes VALUES (2, 'second', NULL), (5, 'fifth', 'body five');
INSERT INTO plain_notes VALUES (2, 'second', NULL), (5, 'fifth', 'body five');
INSERT INTO notes(title) VALUES ('auto six');
INSERT INTO plain_notes(title) VALUES ('auto six');
INSERT INTO notes VALUES (NULL, 'auto seven', 'b');
INSERT INTO plain_notes VALUES (NULL, 'auto seven', 'b');
SELECT last_insert_rowid() IS NOT NULL AS has_last_insert_rowid, changes() AS changes;
INSERT INTO notes(id, title) SELECT id + 100, title || ' copy' FROM plain_notes WHERE id <= 2;
INSERT INTO plain_notes(id, title) SELECT id + 100, title || ' copy' FROM plain_notes WHERE id <= 2;
SELECT changes() AS changes;
-- INSERT ... SELECT from the same encrypted table reads every row once.
INSERT INTO notes(id, title, body) SELECT id + 1000, title, body FROM notes WHERE id < 100;
INSERT INTO plain_notes(id, title, body) SELECT id + 1000, title, body FROM plain_notes WHERE id < 100;
SELECT changes() AS changes;
SELECT id, title, body FROM notes ORDER BY id;
SELECT count(*) AS differences FROM notes_diff;

-- Updates: values, the primary key, and nothing.
UPDATE notes SET body = 'edited' WHERE id = 1;
UPDATE plain_notes SET body = 'edited' WHERE id = 1;
UPDATE notes SET title = upper(title) WHERE id > 1000;
UPDATE plain_notes SET title = upper(title) WHERE id > 1000;
SELECT changes() AS changes;
UPDATE notes SET id = 50 WHERE id = 5;
UPDATE plain_notes SET id = 50 WHERE id = 5;
SELECT id, title FROM notes WHERE id = 50;
SELECT count(*) AS rows_with_old_key FROM notes WHERE id = 5;
UPDATE notes SET body = 'none' WHERE id = 999;
SELECT changes() AS changes;
SELECT count(*) AS differences FROM notes_diff;

-- Deletes, and a deleted key inserted again.
DELETE FROM notes WHERE id = 2;
DELETE FROM plain_notes WHERE id = 2;
DELETE FROM notes WHERE title LIKE '%copy';
DELETE FROM plain_notes WHERE title LIKE '%copy';
SELECT changes() AS changes;
DELETE FROM notes WHERE id = 999;
SELECT changes() AS changes;
INSERT INTO notes VALUES (2, 'second again', NULL);
INSERT INTO plain_notes VALUES (2, 'second again', NULL);
SELECT id, title, body FROM notes ORDER BY id;
SELECT count(*) AS differences FROM notes_diff;

-- INTEGER PRIMARY KEY values after deleting the largest key and after a
-- rolled-back insert: SQLite takes one more than the largest key in the
-- table at the time of the insert, so both inserts below get key 3.
CREATE VIRTUAL TABLE queue USING persist(id INTEGER PRIMARY KEY, job TEXT);
CREATE TABLE plain_queue(id INTEGER PRIMARY KEY, job TEXT);
INSERT INTO queue(job) VALUES ('a'), ('b'), ('c');
INSERT INTO plain_queue(job) VALUES ('a'), ('b'), ('c');
DELETE FROM queue WHERE id = 3;
DELETE FROM plain_queue WHERE id = 3;
INSERT INTO queue(job) VALUES ('after deleting the largest');
INSERT INTO plain_queue(job) VALUES ('after deleting the largest');
SELECT id, job FROM queue ORDER BY id;
DELETE FROM queue WHERE id = 3;
DELETE FROM plain_queue WHERE id = 3;
BEGIN;
INSERT INTO queue(job) VALUES ('rolled back');
INSERT INTO plain_queue(job) VALUES ('rolled back');
ROLLBACK;
INSERT INTO queue(job) VALUES ('after the rollback');
INSERT INTO plain_queue(job) VALUES ('after the rollback');
SELECT id, job FROM queue ORDER BY id;
SELECT id, job FROM plain_queue ORDER BY id;

-- Constraint errors use SQLite's wording (and its result code 19).
INSERT INTO notes VALUES (1, 'duplicate', NULL);
INSERT INTO notes VALUES (9, NULL, 'no title');
UPDATE notes SET title = NULL WHERE id = 1;
UPDATE notes SET id = 2 WHERE id = 1;
SELECT count(*) AS differences FROM notes_diff;

-- Conflict resolution.
INSERT OR IGNORE INTO notes VALUES (1, 'ignored', NULL), (10, 'ten', NULL);
INSERT OR IGNORE INTO plain_notes VALUES (1, 'ignored', NULL), (10, 'ten', NULL);
SELECT changes() AS changes;
INSERT OR IGNORE INTO notes VALUES (11, NULL, 'null title is skipped'), (12, 'twelve', NULL);
INSERT OR IGNORE INTO plain_notes VALUES (11, NULL, 'null title is skipped'), (12, 'twelve', NULL);
INSERT OR REPLACE INTO notes VALUES (1, 'replaced', 'new body');
INSERT OR REPLACE INTO plain_notes VALUES (1, 'replaced', 'new body');
REPLACE INTO notes VALUES (13, 'thirteen', NULL);
REPLACE INTO plain_notes VALUES (13, 'thirteen', NULL);
INSERT OR REPLACE INTO notes VALUES (14, NULL, 'NOT NULL still fails');
-- OR FAIL keeps the rows inserted before the failing row.
INSERT OR FAIL INTO notes VALUES (20, 'kept', NULL), (1, 'conflict', NULL), (21, 'never', NULL);
INSERT OR FAIL INTO plain_notes VALUES (20, 'kept', NULL), (1, 'conflict', NULL), (21, 'never', NULL);
-- OR ABORT (the default) undoes the whole statement.
INSERT OR ABORT INTO notes VALUES (30, 'undone', NULL), (1, 'conflict', NULL), (31, 'never', NULL);
INSERT OR ABORT INTO plain_notes VALUES (30, 'undone', NULL), (1, 'conflict', NULL), (31, 'never', NULL);
UPDATE OR IGNORE notes SET id = 1 WHERE id = 10;
UPDATE OR IGNORE plain_notes SET id = 1 WHERE id = 10;
UPDATE OR REPLACE notes SET id = 12 WHERE id = 13;
UPDATE OR REPLACE plain_notes SET id = 12 WHERE id = 13;
SELECT id, title, body FROM notes ORDER BY id;
SELECT count(*) AS differences FROM notes_diff;

-- Setting or changing the rowid of an encrypted table is not supported.
INSERT INTO notes(rowid, id, title) VALUES (5, 40, 'rowid');
UPDATE notes SET rowid = 7 WHERE id = 1;
SELECT count(*) AS differences FROM notes_diff;

-- A composite primary key: every key column is required, and duplicates
-- are reported with all key columns.
CREATE VIRTUAL TABLE tracks USING persist(album TEXT, disc INTEGER, track INTEGER, name TEXT, PRIMARY KEY (album, disc, track));
INSERT INTO tracks VALUES ('A', 1, 1, 'one'), ('A', 1, 2, 'two'), ('A', 2, 1, 'three'), ('B', 1, 1, 'four');
INSERT INTO tracks VALUES ('A', 1, 1, 'duplicate');
INSERT INTO tracks VALUES ('A', NULL, 3, 'no disc');
UPDATE tracks SET track = 3 WHERE album = 'A' AND disc = 1 AND track = 2;
UPDATE tracks SET disc = 1 WHERE name = 'three';
SELECT album, disc, track, name FROM tracks ORDER BY album, disc, track;
SELECT name FROM tracks WHERE album = 'A' AND disc = 1 AND track = 3;
SELECT name FROM tracks WHERE album = 'A' AND disc = '2' AND track = 1.0;

-- Without a primary key, duplicate rows are allowed and every row can be
-- updated and deleted; OR REPLACE has no key to conflict on.
CREATE VIRTUAL TABLE events USING persist(kind TEXT, payload);
CREATE TABLE plain_events(kind TEXT, payload);
CREATE TEMP VIEW events_diff AS
SELECT 'encrypted only' AS side, * FROM (
    SELECT quote(kind), quote(payload), count(*) FROM events GROUP BY 1, 2
    EXCEPT SELECT quote(kind), quote(payload), count(*) FROM plain_events GROUP BY 1, 2)
UNION ALL
SELECT 'plain only', * FROM (
    SELECT quote(kind), quote(payload), count(*) FROM plain_events GROUP BY 1, 2
    EXCEPT SELECT quote(kind), quote(payload), count(*) FROM events GROUP BY 1, 2);
INSERT INTO events VALUES ('click', 1), ('click', 1), (NULL, NULL), ('view', x'00ff');
INSERT INTO plain_events VALUES ('click', 1), ('click', 1), (NULL, NULL), ('view', x'00ff');
INSERT OR REPLACE INTO events VALUES ('click', 1);
INSERT OR REPLACE INTO plain_events VALUES ('click', 1);
UPDATE events SET payload = 2 WHERE kind = 'click';
UPDATE plain_events SET payload = 2 WHERE kind = 'click';
SELECT changes() AS changes;
DELETE FROM events WHERE kind IS NULL;
DELETE FROM plain_events WHERE kind IS NULL;
SELECT kind, quote(payload) AS payload, count(*) AS copies FROM events GROUP BY 1, 2 ORDER BY 1;
SELECT count(*) AS differences FROM events_diff;

-- Type affinity: the same values inserted into columns of each affinity.
CREATE VIRTUAL TABLE affinity USING persist(id INTEGER PRIMARY KEY, i INTEGER, r REAL, n NUMERIC, t TEXT, b BLOB, u);
CREATE TABLE plain_affinity(id INTEGER PRIMARY KEY, i INTEGER, r REAL, n NUMERIC, t TEXT, b BLOB, u);
CREATE TEMP VIEW affinity_diff AS
SELECT 'encrypted only' AS side, * FROM (
    SELECT id, quote(i), quote(r), quote(n), quote(t), quote(b), quote(u) FROM affinity
    EXCEPT SELECT id, quote(i), quote(r), quote(n), quote(t), quote(b), quote(u) FROM plain_affinity)
UNION ALL
SELECT 'plain only', * FROM (
    SELECT id, quote(i), quote(r), quote(n), quote(t), quote(b), quote(u) FROM plain_affinity
    EXCEPT SELECT id, quote(i), quote(r), quote(n), quote(t), quote(b), quote(u) FROM affinity);
CREATE TEMP TABLE inputs(id INTEGER PRIMARY KEY, v);
INSERT INTO inputs(v) VALUES
    ('5'), (5), (1.0), ('1.0'), (2.5), ('2.5'), (' 7 '), ('1e3'), ('0x10'), ('abc'),
    (x'35'), (''), (x''), (NULL), (9223372036854775807), (-9223372036854775808),
    (9223372036854775807.0), ('9223372036854775808'), (1e300), (-0.0);
INSERT INTO affinity SELECT id, v, v, v, v, v, v FROM inputs;
INSERT INTO plain_affinity SELECT id, v, v, v, v, v, v FROM inputs;
SELECT quote(inputs.v) AS input,
       typeof(i) || ' ' || quote(i) AS "INTEGER",
       typeof(r) || ' ' || quote(r) AS "REAL",
       typeof(n) || ' ' || quote(n) AS "NUMERIC",
       typeof(t) || ' ' || quote(t) AS "TEXT",
       typeof(b) || ' ' || quote(b) AS "BLOB",
       typeof(u) || ' ' || quote(u) AS "none"
FROM affinity JOIN inputs USING (id) ORDER BY id;
SELECT count(*) AS differences FROM affinity_diff;
-- Lookups convert the key the same way: '5' finds the INTEGER key 5.
INSERT INTO affinity(id, t) VALUES ('500', 'text key');
SELECT id, typeof(id) AS type FROM affinity WHERE id = 500;
SELECT t FROM affinity WHERE id = '500';
SELECT t FROM affinity WHERE id = 500.0;
-- A key that INTEGER affinity cannot make an integer is rejected, as by an
-- ordinary table's INTEGER PRIMARY KEY, on INSERT and on UPDATE, and the
-- row keeps its key.
INSERT INTO affinity(id, t) VALUES ('abc', 'text key');
INSERT INTO plain_affinity(id, t) VALUES ('abc', 'text key');
INSERT INTO affinity(id, t) VALUES (2.5, 'real key');
UPDATE affinity SET id = x'35' WHERE id = 500;
SELECT id, t FROM affinity WHERE t IN ('text key', 'real key');

-- REAL values keep every bit, -0.0 included (input 20), in a column
-- without affinity, as in SQLite. A plain REAL column stores -0.0 as the
-- integer 0 and so reads back 0.0; the encrypted REAL column keeps the sign
-- bit, because it stores the value as given.
SELECT hex(ieee754_to_blob(u)) AS encrypted_none, hex(ieee754_to_blob(r)) AS encrypted_real
FROM affinity WHERE id = 20;
SELECT hex(ieee754_to_blob(u)) AS plain_none, hex(ieee754_to_blob(r)) AS plain_real
FROM plain_affinity WHERE id = 20;
INSERT INTO inputs(id, v) VALUES (31, 0.1), (32, 1 / 3.0), (33, 4.9406564584124654e-324), (34, 1.7976931348623157e308), (35, -2.2250738585072014e-308);
INSERT INTO affinity(id, u, r) SELECT id, v, v FROM inputs WHERE id > 30;
SELECT id, printf('%!.17g', u) AS stored,
       ieee754_to_blob(u) = ieee754_to_blob(inputs.v) AS none_bits_equal,
       ieee754_to_blob(r) = ieee754_to_blob(inputs.v) AS real_bits_equal
FROM affinity JOIN inputs USING (id) WHERE id > 30 ORDER BY id;

-- Empty text, empty blob and NULL are three different values, as keys too.
CREATE VIRTUAL TABLE empties USING persist(k PRIMARY KEY, v);
INSERT INTO empties VALUES ('', 'empty text'), (x'', 'empty blob'), (0, 'zero'), ('0', 'text zero');
INSERT INTO empties VALUES (NULL, 'null key');
SELECT v FROM empties WHERE k = '';
SELECT v FROM empties WHERE k = x'';
SELECT v FROM empties WHERE k = 0;
SELECT v FROM empties WHERE k = '0';
SELECT quote(k) AS k, typeof(k) AS type, length(k) AS length, v FROM empties ORDER BY v;
INSERT INTO empties VALUES (1, ''), (2, x''), (3, NULL);
SELECT k, typeof(v) AS type, quote(v) AS v, v IS NULL AS is_null, v = '' AS equals_empty_text FROM empties WHERE k IN (1, 2, 3) ORDER BY k;

-- Non-ASCII text round-trips byte for byte, as a value and as a key.
INSERT INTO empties VALUES ('日本語', 'Japanese'), ('😀', 'emoji'), ('Zoë', 'diaeresis'), (char(0x10FFFF), 'last code point');
SELECT v, length(k) AS characters, hex(k) AS utf8 FROM empties WHERE k IN ('日本語', '😀', 'Zoë', char(0x10FFFF)) ORDER BY v;
INSERT INTO empties VALUES (10, 'ß → ẞ, ﬁ, ǅ'), (11, 'a' || char(0) || 'b');
SELECT k, hex(v) AS utf8 FROM empties WHERE k IN (10, 11) ORDER BY k;
