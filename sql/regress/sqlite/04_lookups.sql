-- 04_lookups: query plans and primary-key lookups on encrypted tables.
--
-- Covers:
-- - EXPLAIN QUERY PLAN for primary-key equality (literal, bound parameter,
--   IN list), a full and a partial composite key, the rowid, ranges, and
--   joins in both directions;
-- - proof that a key lookup reads only the rows it returns: the counter
--   envelopes_opened of persist_status() goes up by exactly the number of
--   rows fetched by key from a table of 1000 rows, and by 1000 for a scan;
-- - the results of the lookups, including keys given with another type.
.headers on
.nullvalue NULL
SELECT persist_init('lookups') ->> '$.created' AS created;

CREATE VIRTUAL TABLE items USING persist(id INTEGER PRIMARY KEY, name TEXT, price REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO items SELECT i, 'item ' || i, i / 4.0 FROM n;
CREATE VIRTUAL TABLE stock USING persist(store TEXT, item INTEGER, quantity INTEGER, PRIMARY KEY (store, item));
INSERT INTO stock SELECT 'store ' || (id % 3), id, id % 7 FROM items WHERE id <= 300;
CREATE VIRTUAL TABLE tags USING persist(tag TEXT PRIMARY KEY, item INTEGER);
INSERT INTO tags VALUES ('red', 10), ('green', 20), ('blue', 30);
CREATE TABLE wanted(item INTEGER);
INSERT INTO wanted VALUES (5), (50), (500), (5000);

-- Query plans. "INDEX 1:primary key" is a lookup by blind id through the
-- unique index on T_rows.rid, "INDEX 2:rowid" a lookup by shadow rowid,
-- and "INDEX 0:full scan" reads every row.
EXPLAIN QUERY PLAN SELECT * FROM items WHERE id = 5;
.parameter set :key 500
EXPLAIN QUERY PLAN SELECT * FROM items WHERE id = :key;
EXPLAIN QUERY PLAN SELECT * FROM items WHERE id IN (5, 6, 7);
EXPLAIN QUERY PLAN SELECT * FROM items WHERE id IN (SELECT item FROM wanted);
EXPLAIN QUERY PLAN SELECT * FROM stock WHERE store = 'store 1' AND item = 10;
EXPLAIN QUERY PLAN SELECT * FROM stock WHERE item = 10 AND store = 'store 1';
EXPLAIN QUERY PLAN SELECT * FROM stock WHERE store = 'store 1';
EXPLAIN QUERY PLAN SELECT * FROM items WHERE rowid = 5;
EXPLAIN QUERY PLAN SELECT * FROM items WHERE id > 990;
EXPLAIN QUERY PLAN SELECT * FROM items WHERE id IS NULL;
EXPLAIN QUERY PLAN SELECT * FROM items WHERE name = 'item 5';
EXPLAIN QUERY PLAN SELECT i.name FROM wanted w JOIN items i ON i.id = w.item;
EXPLAIN QUERY PLAN SELECT s.quantity FROM items i JOIN stock s ON s.store = 'store 0' AND s.item = i.id;
EXPLAIN QUERY PLAN SELECT i.name FROM tags t JOIN items i ON i.id = t.item;
EXPLAIN QUERY PLAN SELECT w.item, i.name FROM wanted w LEFT JOIN items i ON i.id = w.item;

-- envelopes_opened before and after each statement.
CREATE TEMP TABLE mark(opened INTEGER);
INSERT INTO mark VALUES (persist_status() ->> '$.counters.envelopes_opened');
CREATE TEMP VIEW opened_since_mark AS
SELECT (persist_status() ->> '$.counters.envelopes_opened') - opened AS envelopes_opened FROM mark;

SELECT name, price FROM items WHERE id = 500;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT name FROM items WHERE id = :key;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT name FROM items WHERE id = 5000;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT name FROM items WHERE id IN (7, 70, 700, 7000) ORDER BY id;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT quantity FROM stock WHERE store = 'store 1' AND item = 10;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT w.item, i.name FROM wanted w LEFT JOIN items i ON i.id = w.item ORDER BY w.item;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT count(*) AS rows, sum(price) AS total FROM items;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT count(*) AS expensive FROM items WHERE id > 990;
SELECT * FROM opened_since_mark;
-- The rowid of a row found by key finds it again through the rowid plan.
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
SELECT name FROM items WHERE rowid = (SELECT rowid FROM items WHERE id = 42);
SELECT * FROM opened_since_mark;
-- Writes by key open only the row they change, twice: once for SQLite's
-- lookup and once more in xUpdate to read the old row.
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
UPDATE items SET price = 0 WHERE id = 600;
SELECT * FROM opened_since_mark;
UPDATE mark SET opened = persist_status() ->> '$.counters.envelopes_opened';
DELETE FROM items WHERE id = 601;
SELECT * FROM opened_since_mark;

-- Keys given with another type are converted by the column's affinity
-- before the blind id is computed, as SQLite compares them. Values that do
-- not convert, NULL, and fractional keys match nothing.
SELECT name FROM items WHERE id = '42';
SELECT name FROM items WHERE id = 42.0;
SELECT name FROM items WHERE id = ' 42 ';
SELECT count(*) AS matches FROM items WHERE id = 42.5;
SELECT count(*) AS matches FROM items WHERE id = 'forty-two';
SELECT count(*) AS matches FROM items WHERE id = x'3432';
SELECT count(*) AS matches FROM items WHERE id = NULL;
SELECT count(*) AS matches FROM items WHERE id IS NULL;
SELECT item FROM tags WHERE tag = 'green';
SELECT count(*) AS matches FROM tags WHERE tag = 'GREEN';
SELECT quantity FROM stock WHERE store = 'store 1' AND item = '10';
SELECT count(*) AS matches FROM stock WHERE store = 'store 1' AND item = 11;
SELECT count(*) AS matches FROM stock WHERE store = 'store 1' AND item = NULL;

-- Joins and self-joins return what the same query returns on a plain copy.
CREATE TABLE plain_items AS SELECT id, name, price FROM items;
CREATE TABLE plain_stock AS SELECT store, item, quantity FROM stock;
SELECT count(*) AS pairs FROM items a JOIN items b ON b.id = a.id + 1;
SELECT count(*) AS pairs FROM plain_items a JOIN plain_items b ON b.id = a.id + 1;
SELECT sum(s.quantity) AS quantity FROM items i JOIN stock s ON s.store = 'store 0' AND s.item = i.id;
SELECT sum(s.quantity) AS quantity FROM plain_items i JOIN plain_stock s ON s.store = 'store 0' AND s.item = i.id;
SELECT count(*) AS differences FROM (
    SELECT i.id, i.name, s.store, s.quantity FROM items i JOIN stock s ON s.item = i.id
    EXCEPT
    SELECT i.id, i.name, s.store, s.quantity FROM plain_items i JOIN plain_stock s ON s.item = i.id);
SELECT id, name FROM items ORDER BY price DESC, id LIMIT 3;
