-- 06_schema: creating, renaming and dropping encrypted tables.
--
-- Covers:
-- - the shadow tables T_rows and T_config in sqlite_schema, and what they
--   contain;
-- - defensive mode (.dbconfig defensive on), which blocks direct writes to
--   the shadow tables;
-- - column definitions with quoted names and type parameters;
-- - unsupported constraints and other invalid definitions;
-- - wrong numbers of values and unknown columns;
-- - ALTER TABLE RENAME, which must move the shadow tables and keep the
--   rows readable, and DROP TABLE;
-- - tables in the temp schema and in an attached database, and VACUUM.
.headers on
.nullvalue NULL
SELECT persist_init('schema') ->> '$.created' AS created;

CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
INSERT INTO notes VALUES (1, 'one'), (2, 'two');
-- The index on the write order has a random name, so that no later table
-- can collide with it; it is shown as persist_seq_<random>.
SELECT type, CASE WHEN name LIKE 'persist\_seq\_%' ESCAPE '\' THEN 'persist_seq_<random>' ELSE name END AS name, tbl_name
FROM sqlite_schema WHERE tbl_name LIKE 'notes%' ORDER BY type, name;
SELECT sql FROM sqlite_schema WHERE name = 'notes';
SELECT name, type, "notnull", pk FROM pragma_table_info('notes_rows') ORDER BY cid;
SELECT key, value FROM notes_config ORDER BY key;
-- The shadow table contains no plaintext: no value and no key in any column.
SELECT count(*) AS shadow_rows, count(DISTINCT rid) AS record_ids,
       min(length(rid)) AS rid_length, sum(deleted) AS tombstones, sum(seq > 0) AS local_writes
FROM notes_rows;
SELECT count(*) AS rows_with_plaintext FROM notes_rows
WHERE instr(env, CAST('one' AS BLOB)) OR instr(env, CAST('two' AS BLOB)) OR id IN (1, 2);
SELECT persist_status() ->> '$.tables' AS tables;

-- Defensive mode: the shadow tables can be read but not written or
-- dropped directly; the encrypted table itself still works.
.dbconfig defensive on
INSERT INTO notes_rows(rid, env, clock, device) VALUES (zeroblob(16), zeroblob(40), 0, zeroblob(16));
UPDATE notes_rows SET env = zeroblob(40);
DELETE FROM notes_rows;
UPDATE notes_config SET value = 'other' WHERE key = 'logical_name';
DELETE FROM notes_config;
DROP TABLE notes_rows;
DROP TABLE notes_config;
SELECT count(*) AS shadow_rows FROM notes_rows;
INSERT INTO notes VALUES (3, 'three');
UPDATE notes SET body = 'THREE' WHERE id = 3;
DELETE FROM notes WHERE id = 3;
SELECT id, body FROM notes ORDER BY id;
.dbconfig defensive off

-- Column definitions as in CREATE TABLE: quoted names, types with
-- parameters, NOT NULL, NULL, and a table-level PRIMARY KEY with ASC/DESC.
CREATE VIRTUAL TABLE prices USING persist("item ""name""" TEXT, [list price] NUMERIC(10, 2) NULL, `currency` VARCHAR(3) NOT NULL, CONSTRAINT pk PRIMARY KEY ("item ""name""" ASC, currency DESC));
INSERT INTO prices VALUES ('tea', '1.50', 'EUR');
SELECT "item ""name""", typeof("list price") AS type, "list price", currency FROM prices;
SELECT value AS declaration FROM prices_config WHERE key = 'declaration';
SELECT name, type FROM pragma_table_info('prices') ORDER BY cid;
INSERT INTO prices VALUES ('tea', 2, NULL);
INSERT INTO prices VALUES ('tea', 2, 'EUR');
CREATE VIRTUAL TABLE IF NOT EXISTS prices USING persist(x);
CREATE VIRTUAL TABLE prices USING persist(x);

-- Definitions that are rejected, each with the reason; none of them leaves
-- a table or shadow table behind.
CREATE VIRTUAL TABLE bad USING persist;
CREATE VIRTUAL TABLE bad USING persist();
CREATE VIRTUAL TABLE bad USING persist(a TEXT UNIQUE);
CREATE VIRTUAL TABLE bad USING persist(a TEXT DEFAULT 'x');
CREATE VIRTUAL TABLE bad USING persist(a INTEGER CHECK (a > 0));
CREATE VIRTUAL TABLE bad USING persist(a TEXT COLLATE NOCASE);
CREATE VIRTUAL TABLE bad USING persist(a INTEGER REFERENCES notes(id));
CREATE VIRTUAL TABLE bad USING persist(a INTEGER GENERATED ALWAYS AS (1));
CREATE VIRTUAL TABLE bad USING persist(a INTEGER AS (1));
CREATE VIRTUAL TABLE bad USING persist(a INTEGER PRIMARY KEY AUTOINCREMENT);
CREATE VIRTUAL TABLE bad USING persist(a TEXT PRIMARY KEY ON CONFLICT REPLACE);
CREATE VIRTUAL TABLE bad USING persist(a, b, UNIQUE (a, b));
CREATE VIRTUAL TABLE bad USING persist(a, b, CHECK (a <> b));
CREATE VIRTUAL TABLE bad USING persist(a, b, FOREIGN KEY (a) REFERENCES notes(id));
CREATE VIRTUAL TABLE bad USING persist(a, A);
CREATE VIRTUAL TABLE bad USING persist(a PRIMARY KEY, b PRIMARY KEY);
CREATE VIRTUAL TABLE bad USING persist(a PRIMARY KEY, PRIMARY KEY (a));
CREATE VIRTUAL TABLE bad USING persist(a, PRIMARY KEY (b));
CREATE VIRTUAL TABLE bad USING persist(a, PRIMARY KEY (a, a));
CREATE VIRTUAL TABLE bad USING persist(a, PRIMARY KEY ());
CREATE VIRTUAL TABLE bad USING persist(a NOT);
CREATE VIRTUAL TABLE bad USING persist(_persist_row_key);
SELECT count(*) AS leftovers FROM sqlite_schema WHERE name LIKE 'bad%';

-- Wrong numbers of values and unknown columns are SQLite's errors.
INSERT INTO notes VALUES (4);
INSERT INTO notes VALUES (4, 'four', 'extra');
INSERT INTO notes(id, missing) VALUES (4, 'four');
SELECT missing FROM notes;
UPDATE notes SET missing = 1;
-- Virtual tables cannot be altered, indexed or given triggers.
ALTER TABLE notes ADD COLUMN extra;
ALTER TABLE notes DROP COLUMN body;
CREATE INDEX notes_body ON notes(body);
CREATE TRIGGER notes_insert AFTER INSERT ON notes BEGIN SELECT 1; END;

-- ALTER TABLE RENAME moves the shadow tables with the table. Envelopes and
-- blind ids stay bound to the logical name "notes", so the rows stay
-- readable, by scan and by key. A new table may not take the old name,
-- because its rows would be bound to the same logical name.
ALTER TABLE notes RENAME TO memos;
SELECT name FROM sqlite_schema WHERE type = 'table' AND (name LIKE 'notes%' OR name LIKE 'memos%') ORDER BY name;
SELECT id, body FROM memos ORDER BY id;
SELECT body FROM memos WHERE id = 2;
INSERT INTO memos VALUES (3, 'three');
UPDATE memos SET body = 'TWO' WHERE id = 2;
SELECT value AS logical_name FROM memos_config WHERE key = 'logical_name';
SELECT persist_status() ->> '$.tables' AS tables;
CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE VIRTUAL TABLE jottings USING persist(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
INSERT INTO jottings VALUES (1, 'new jottings');
SELECT body FROM jottings WHERE id = 1;
SELECT persist_status() ->> '$.tables' AS tables;
-- A new connection reads both tables.
.open test.db
.load ./libpersist
SELECT persist_init('schema') ->> '$.created' AS created;
SELECT id, body FROM memos ORDER BY id;
SELECT id, body FROM jottings ORDER BY id;

-- DROP TABLE removes the shadow tables; the name can be used again.
DROP TABLE memos;
DROP TABLE jottings;
SELECT count(*) AS leftovers FROM sqlite_schema WHERE name LIKE 'memos%' OR name LIKE 'jottings%';
DROP TABLE IF EXISTS notes;
CREATE VIRTUAL TABLE notes USING persist(k TEXT PRIMARY KEY);
SELECT count(*) AS rows FROM notes;
DROP TABLE notes;
-- A leftover table with a shadow table's name blocks CREATE, with a
-- message that names the tables to drop.
CREATE TABLE notes_rows(x);
CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY);
SELECT count(*) AS leftovers FROM sqlite_schema WHERE name IN ('notes', 'notes_config');
DROP TABLE notes_rows;

-- Encrypted tables live in the main database, whose store persist_init
-- opened: one in the temp schema or in an attached database is rejected
-- and leaves nothing behind there.
CREATE VIRTUAL TABLE temp.scratch USING persist(id INTEGER PRIMARY KEY, v);
SELECT count(*) AS temp_tables FROM temp.sqlite_schema WHERE type = 'table';
ATTACH 'other.db' AS other;
CREATE VIRTUAL TABLE other.archive USING persist(id INTEGER PRIMARY KEY, v);
SELECT count(*) AS attached_tables FROM other.sqlite_schema WHERE type = 'table';
SELECT count(*) AS main_leftovers FROM main.sqlite_schema WHERE name LIKE 'archive%' OR name LIKE 'scratch%';
DETACH other;

-- VACUUM rewrites the file; the encrypted tables read the same after it.
VACUUM;
SELECT * FROM prices ORDER BY 1;
