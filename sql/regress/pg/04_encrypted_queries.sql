-- Encrypted tables: reading by primary key and by scan.
--
-- A primary key equality (=, IN, a parameter, an InitPlan, a join column)
-- is an index lookup of the rows table by blind id: EXPLAIN shows
-- "Persist Lookup: primary key". Any other qual is checked by Postgres on
-- the decrypted rows of a full scan ("Persist Scan: all rows"). The plans
-- are shown without costs, which depend on the machine.
CREATE EXTENSION persist;
SELECT persist.init('queries')::jsonb -> 'created' AS created;

CREATE FOREIGN TABLE item (id integer NOT NULL, name text NOT NULL, price numeric(10,2),
                           tags text[])
    SERVER persist OPTIONS (primary_key 'id');
INSERT INTO item SELECT g, 'item ' || g, g * 0.25, ARRAY['t' || g % 3]
FROM generate_series(1, 500) g;
CREATE FOREIGN TABLE line (order_id bigint NOT NULL, line integer NOT NULL, item_id integer)
    SERVER persist OPTIONS (primary_key 'order_id, line');
INSERT INTO line SELECT o, l, (o * 7 + l) % 500 + 1
FROM generate_series(1, 40) o, generate_series(1, 3) l;
CREATE FOREIGN TABLE tagged (name text NOT NULL, note text)
    SERVER persist OPTIONS (primary_key 'name');
INSERT INTO tagged VALUES ('alpha', 'first'), ('beta', 'second'), ('Alpha', 'upper');

SELECT 'persist_rows.' || option_value AS rows
FROM pg_foreign_table, pg_options_to_table(ftoptions)
WHERE ftrelid = 'item'::regclass AND option_name = 'rows_table' \gset
ANALYZE :rows;

-- Equality and IN lists.
SELECT * FROM item WHERE id = 42;
SELECT * FROM item WHERE 42 = id;
SELECT id, name FROM item WHERE id IN (3, 1, 2, 999, NULL) ORDER BY id;
SELECT id, name FROM item WHERE id = 42::bigint;
SELECT id, name FROM item WHERE id = 501;
SELECT id, name FROM item WHERE id = NULL;
EXPLAIN (COSTS OFF) SELECT * FROM item WHERE id = 42;
EXPLAIN (COSTS OFF) SELECT * FROM item WHERE id IN (1, 2, 3);
EXPLAIN (COSTS OFF) SELECT * FROM item WHERE id = 42::bigint;
-- A composite key needs every column.
SELECT * FROM line WHERE order_id = 7 AND line = 2;
SELECT * FROM line WHERE order_id IN (7, 8) AND line = ANY (ARRAY[1, 3]) ORDER BY 1, 2;
EXPLAIN (COSTS OFF) SELECT * FROM line WHERE order_id = 7 AND line = 2;
EXPLAIN (COSTS OFF) SELECT * FROM line WHERE order_id = 7;
-- Text keys compare bytes.
SELECT * FROM tagged WHERE name = 'alpha';
SELECT * FROM tagged WHERE name IN ('Alpha', 'gamma');
EXPLAIN (COSTS OFF) SELECT * FROM tagged WHERE name = 'alpha';

-- Other quals are checked after decryption, on a scan or on the looked-up
-- row.
SELECT id, name FROM item WHERE name = 'item 77';
SELECT id, name FROM item WHERE price > 124.5 ORDER BY id;
SELECT id, name FROM item WHERE id = 77 AND name = 'item 78';
SELECT id, name FROM item WHERE id = 77 AND price = 19.25;
SELECT id FROM item WHERE id < 4 ORDER BY id;
SELECT id FROM item WHERE id = 5 OR id = 6 ORDER BY id;
SELECT count(*), sum(price), min(name), max(tags[1]) FROM item;
EXPLAIN (COSTS OFF) SELECT id FROM item WHERE name = 'item 77';
EXPLAIN (COSTS OFF) SELECT id FROM item WHERE id = 77 AND name = 'item 78';
EXPLAIN (COSTS OFF) SELECT id FROM item WHERE id < 4;

-- A lookup reads the rows table through its primary key index and never
-- scans it: idx_scan of the rows table grows and seq_scan does not.
SELECT pg_stat_force_next_flush();
SELECT seq_scan AS seq_before, idx_scan AS idx_before
FROM pg_stat_user_tables WHERE relid = :'rows'::regclass \gset
SELECT name FROM item WHERE id = 123;
SELECT name FROM item WHERE id IN (124, 125) ORDER BY 1;
SELECT w.item_id, i.name FROM (VALUES (1), (2)) w(item_id) JOIN item i ON i.id = w.item_id
ORDER BY 1;
SELECT pg_stat_force_next_flush();
SELECT seq_scan - :seq_before AS seq_scans, idx_scan - :idx_before AS index_scans
FROM pg_stat_user_tables WHERE relid = :'rows'::regclass;

-- Prepared statements: five custom plans, then a generic plan, which keeps
-- the parameter, and forced generic plans.
PREPARE by_id(integer) AS SELECT id, name FROM item WHERE id = $1;
EXECUTE by_id(1);
EXECUTE by_id(2);
EXECUTE by_id(3);
EXECUTE by_id(4);
EXECUTE by_id(5);
EXECUTE by_id(6);
EXECUTE by_id(7);
EXECUTE by_id(8);
EXECUTE by_id(NULL);
EXPLAIN (COSTS OFF) EXECUTE by_id(9);
SELECT generic_plans > 0 AS used_generic, custom_plans FROM pg_prepared_statements
WHERE name = 'by_id';
SET plan_cache_mode = force_generic_plan;
PREPARE by_ids(integer[]) AS SELECT id, name FROM item WHERE id = ANY ($1) ORDER BY id;
EXECUTE by_ids('{10,11,12}');
EXECUTE by_ids('{13,NULL,9999}');
EXECUTE by_ids('{}');
EXPLAIN (COSTS OFF) EXECUTE by_ids('{1}');
PREPARE by_key(bigint, integer) AS SELECT * FROM line WHERE order_id = $1 AND line = $2;
EXECUTE by_key(3, 1);
EXECUTE by_key(3, 4);
EXPLAIN (COSTS OFF) EXECUTE by_key(3, 1);
RESET plan_cache_mode;
DEALLOCATE ALL;

-- PL/pgSQL variables are parameters of the statement's plan.
CREATE FUNCTION item_name(wanted integer) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    SELECT name INTO result FROM item WHERE id = wanted;
    RETURN result;
END
$$;
SELECT wanted, item_name(wanted) FROM generate_series(1, 8) wanted;
CREATE FUNCTION item_total(first integer, last integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    total numeric := 0;
    one numeric;
BEGIN
    FOR i IN first .. last LOOP
        SELECT price INTO one FROM item WHERE id = i;
        total := total + coalesce(one, 0);
    END LOOP;
    RETURN total;
END
$$;
SELECT item_total(1, 20) AS total;

-- A subquery's result is an InitPlan parameter.
SELECT id, name FROM item WHERE id = (SELECT max(item_id) FROM line);
SELECT id, name FROM item WHERE id = (SELECT 17);
EXPLAIN (COSTS OFF) SELECT id, name FROM item WHERE id = (SELECT max(item_id) FROM line);
-- A correlated subquery evaluates the key for each outer row.
SELECT l.order_id, l.line, (SELECT name FROM item i WHERE i.id = l.item_id) AS item
FROM line l WHERE l.order_id = 2 AND l.line IN (1, 2, 3) ORDER BY l.line;

-- Joins on the primary key use parameterized lookups in a nested loop.
CREATE TEMP TABLE wanted (item_id integer);
INSERT INTO wanted VALUES (5), (50), (500), (5000);
ANALYZE wanted;
SELECT w.item_id, i.name FROM wanted w JOIN item i ON i.id = w.item_id ORDER BY 1;
EXPLAIN (COSTS OFF) SELECT w.item_id, i.name FROM wanted w JOIN item i ON i.id = w.item_id;
SELECT w.item_id, i.name FROM wanted w LEFT JOIN item i ON i.id = w.item_id ORDER BY 1;
-- Between two encrypted tables, through an equivalence class.
SELECT l.order_id, l.line, i.id, i.name FROM line l JOIN item i ON i.id = l.item_id
WHERE l.order_id = 5 ORDER BY l.line;
EXPLAIN (COSTS OFF) SELECT l.order_id, l.line, i.name FROM line l JOIN item i ON i.id = l.item_id
WHERE l.order_id = 5 AND l.line = 1;
SELECT count(*) AS joined, count(DISTINCT i.id) AS items FROM line l JOIN item i ON i.id = l.item_id;
-- LATERAL and a join with a composite key.
SELECT w.item_id, x.name FROM wanted w, LATERAL (SELECT name FROM item WHERE id = w.item_id) x
ORDER BY 1;
SELECT o.order_id, l.item_id
FROM (VALUES (1::bigint, 1), (2, 2), (99, 1)) o(order_id, line)
JOIN line l ON l.order_id = o.order_id AND l.line = o.line ORDER BY 1;

-- Cursors read a scan in pieces; a rewound scan reads again.
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT id FROM item WHERE price < 1 ORDER BY id;
FETCH 2 FROM c;
FETCH 2 FROM c;
FETCH FIRST FROM c;
COMMIT;
-- A scan larger than one batch of the rows table's cursor.
SELECT count(*), count(DISTINCT id), sum(id) FROM item;

-- Rows of another table or another store do not open: an envelope is bound
-- to its table's logical name and record id.
SELECT 'persist_rows.' || option_value AS tagged_rows
FROM pg_foreign_table, pg_options_to_table(ftoptions)
WHERE ftrelid = 'tagged'::regclass AND option_name = 'rows_table' \gset
BEGIN;
UPDATE :tagged_rows SET env = (SELECT env FROM :rows LIMIT 1)
WHERE rid = (SELECT rid FROM :tagged_rows ORDER BY rid LIMIT 1);
SELECT count(*) FROM tagged;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
UPDATE :tagged_rows SET rid = set_byte(rid, 0, get_byte(rid, 0) # 1)
WHERE rid = (SELECT rid FROM :tagged_rows ORDER BY rid LIMIT 1);
SELECT count(*) FROM tagged;
\echo :SQLSTATE
ROLLBACK;
SELECT count(*) AS tagged_rows FROM tagged;

DROP FUNCTION item_name, item_total;
DROP TABLE wanted;
DROP FOREIGN TABLE item, line, tagged;
DROP EXTENSION persist;
