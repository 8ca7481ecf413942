-- Encrypted tables: creating them, what the database stores, types,
-- columns, privileges and DROP.
--
-- An encrypted table is a foreign table of server persist. Its rows live in
-- a table persist_rows.r_<16 hex digits> with a random name, which the
-- output never shows: queries read it into the psql variable rows. Store
-- ids are random too, so messages that contain one are shown with the id
-- replaced. After an expected error, \echo :SQLSTATE prints its SQLSTATE.
CREATE EXTENSION persist;
SELECT persist.init('tables')::jsonb -> 'created' AS created;

-- The extension creates the wrapper, the server and the schema of the rows.
SELECT fdwname, fdwhandler::regproc, fdwvalidator::regproc FROM pg_foreign_data_wrapper;
SELECT srvname, srvoptions FROM pg_foreign_server;
SELECT nspname, nspacl FROM pg_namespace WHERE nspname = 'persist_rows';
SELECT evtname, evtevent, evttags FROM pg_event_trigger;

-- The validator: primary_key is required, options are checked.
CREATE FOREIGN TABLE bad (id integer) SERVER persist;
\echo :SQLSTATE
CREATE FOREIGN TABLE bad (id integer) SERVER persist OPTIONS (primary_key 'id', colour 'red');
\echo :SQLSTATE
CREATE FOREIGN TABLE bad (id integer) SERVER persist OPTIONS (primary_key 'id,');
\echo :SQLSTATE
CREATE FOREIGN TABLE bad (id integer) SERVER persist OPTIONS (primary_key 'id', rows_table 'r_0123456789abcdef');
\echo :SQLSTATE
CREATE FOREIGN TABLE bad (id integer) SERVER persist
    OPTIONS (primary_key 'id', rows_table 'customer', logical_name 'bad', store_id '00');
\echo :SQLSTATE
CREATE FOREIGN TABLE bad (id integer OPTIONS (colour 'red')) SERVER persist OPTIONS (primary_key 'id');
\echo :SQLSTATE
CREATE SERVER other FOREIGN DATA WRAPPER persist OPTIONS (host 'example');
\echo :SQLSTATE
-- The event trigger checks the primary key against the columns.
CREATE FOREIGN TABLE bad (id integer) SERVER persist OPTIONS (primary_key 'missing');
\echo :SQLSTATE
CREATE FOREIGN TABLE bad (id numeric) SERVER persist OPTIONS (primary_key 'id');
\echo :SQLSTATE
CREATE FOREIGN TABLE bad (id char(4)) SERVER persist OPTIONS (primary_key 'id');
\echo :SQLSTATE
SELECT count(*) AS bad_tables FROM pg_class WHERE relname = 'bad';

-- A table needs an open store, whose id it records.
SELECT persist.close() AS closed;
CREATE FOREIGN TABLE customer (id integer NOT NULL, name text) SERVER persist
    OPTIONS (primary_key 'id');
\echo :SQLSTATE
SELECT persist.init('tables')::jsonb -> 'created' AS created;

-- Every type maps to a storage class of the row codec.
CREATE FOREIGN TABLE customer (
    id integer NOT NULL,
    name text NOT NULL,
    email varchar(80),
    code char(3),
    small smallint,
    big bigint,
    ratio real,
    score double precision,
    active boolean,
    photo bytea,
    balance numeric(10,2),
    born date,
    seen timestamp,
    seen_tz timestamptz,
    span interval,
    uid uuid,
    doc jsonb,
    tags text[]
) SERVER persist OPTIONS (primary_key 'id');

-- The trigger recorded the logical name, the rows table and the store, and
-- the name of every column inside the sealed rows.
SELECT option_name,
       CASE option_name
           WHEN 'rows_table' THEN option_value ~ '^r_[0-9a-f]{16}$'
           WHEN 'store_id' THEN option_value = persist.status()::jsonb ->> 'store_id'
       END AS checked,
       CASE WHEN option_name IN ('primary_key', 'logical_name') THEN option_value END AS value
FROM pg_foreign_table, pg_options_to_table(ftoptions)
WHERE ftrelid = 'customer'::regclass
ORDER BY option_name;
SELECT attname, attfdwoptions FROM pg_attribute
WHERE attrelid = 'customer'::regclass AND attnum > 0 ORDER BY attnum;

SELECT 'persist_rows.' || option_value AS rows
FROM pg_foreign_table, pg_options_to_table(ftoptions)
WHERE ftrelid = 'customer'::regclass AND option_name = 'rows_table' \gset

-- The rows table: a blind id and an envelope per row, owned by the table's
-- owner, dropped with the table.
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull, attstorage
FROM pg_attribute WHERE attrelid = :'rows'::regclass AND attnum > 0 ORDER BY attnum;
SELECT pg_get_indexdef(indexrelid) ~ 'USING btree \(rid\)' AS rid_index, indisprimary
FROM pg_index WHERE indrelid = :'rows'::regclass;
SELECT relowner::regrole AS rows_owner FROM pg_class WHERE oid = :'rows'::regclass;
SELECT deptype FROM pg_depend
WHERE classid = 'pg_class'::regclass AND objid = :'rows'::regclass
  AND refobjid = 'customer'::regclass;

INSERT INTO customer VALUES
    (1, 'Zoë Ångström', 'zoe@example.com', 'ab', -32768, 9223372036854775807, 1.5, 0.1,
     true, '\x00ff10', 12345678.91, '1999-12-31', '2009-01-02 03:04:05.678901',
     '2009-01-02 03:04:05+02', '1 day 02:03:04', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{"b": [1, 2], "a": null}', '{red,"green apple",NULL}'),
    (2, 'Bob', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL),
    (3, '', '', '   ', 0, -9223372036854775808, '-0', 'NaN', false, '', 0, 'infinity',
     '-infinity', 'infinity', '-1 year', '00000000-0000-0000-0000-000000000000', '[]',
     '{}');
SELECT * FROM customer ORDER BY id;
SELECT id, float8send(score) AS score_bits, float4send(ratio) AS ratio_bits,
       length(code) AS code_length, pg_typeof(doc), tags[2]
FROM customer ORDER BY id;

-- The rows table contains no plaintext: three rows of 16-byte ids and
-- envelopes, none of which contains a name, an e-mail address or a key.
SELECT count(*) AS rows, min(length(rid)) AS rid_bytes, max(length(rid)) AS max_rid_bytes,
       bool_and(get_byte(env, 0) = 1) AS envelope_version_1,
       bool_or(position(convert_to('Zoë', 'UTF8') IN env) > 0) AS has_name,
       bool_or(position('zoe@example.com'::bytea IN env) > 0) AS has_email,
       bool_or(position('Bob'::bytea IN env) > 0) AS has_bob
FROM :rows;

-- The session's settings do not change how values are stored or read.
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Tokyo';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -3;
INSERT INTO customer (id, name, born, seen, seen_tz, span, score)
VALUES (4, 'Settings', '2001-02-03', '2001-02-03 04:05:06', '2001-02-03 04:05:06+00',
        '3 days', 1.2345678901234567);
RESET ALL;
SELECT persist.init('tables')::jsonb -> 'created' AS created;
SELECT id, born, seen, seen_tz, span, score FROM customer WHERE id IN (1, 4) ORDER BY id;

-- An added column reads as NULL in rows written before it; a renamed
-- column keeps its values, because rows name it by its column_name.
ALTER FOREIGN TABLE customer ADD COLUMN phone text;
ALTER FOREIGN TABLE customer RENAME COLUMN name TO full_name;
SELECT attname, attfdwoptions FROM pg_attribute
WHERE attrelid = 'customer'::regclass AND attname IN ('full_name', 'phone');
SELECT id, full_name, phone FROM customer ORDER BY id;
UPDATE customer SET phone = '+1 555 0100' WHERE id = 2;
SELECT id, full_name, phone FROM customer WHERE id = 2;
-- A dropped column is gone from the rows written after it. A new column of
-- the same name reads NULL, also in rows that still carry the old values:
-- added columns are stored under their name and attribute number.
ALTER FOREIGN TABLE customer DROP COLUMN doc;
UPDATE customer SET phone = NULL WHERE id = 2;
SELECT id, full_name, phone FROM customer WHERE id = 2;
ALTER FOREIGN TABLE customer ADD COLUMN doc jsonb, ADD COLUMN extra text;
SELECT attname, attfdwoptions FROM pg_attribute
WHERE attrelid = 'customer'::regclass AND attname IN ('doc', 'extra', 'phone') ORDER BY attnum;
SELECT id, doc FROM customer ORDER BY id;
ALTER FOREIGN TABLE customer DROP COLUMN extra;
-- A renamed table keeps its logical name, which its envelopes are bound to.
ALTER FOREIGN TABLE customer RENAME TO client;
SELECT count(*) AS client_rows FROM client;
ALTER FOREIGN TABLE client RENAME TO customer;

-- A value stored under another type is read with the new type's input
-- function; a value that does not parse raises the input function's
-- SQLSTATE without quoting the decrypted value.
ALTER FOREIGN TABLE customer ALTER COLUMN email TYPE integer;
SELECT id, email FROM customer WHERE id = 1;
\echo :SQLSTATE
ALTER FOREIGN TABLE customer ALTER COLUMN email TYPE varchar(80);

-- A role needs privileges on the encrypted table only; the rows table is
-- out of its reach.
CREATE ROLE regress_fdw_reader;
GRANT SELECT ON customer TO regress_fdw_reader;
SET ROLE regress_fdw_reader;
SELECT id, full_name FROM customer WHERE id = 2;
SELECT has_table_privilege(:'rows', 'SELECT') AS may_read_rows;
INSERT INTO customer (id, full_name) VALUES (9, 'no');
\echo :SQLSTATE
RESET ROLE;

-- A table of another role: the trigger gives the rows table to that role.
CREATE ROLE regress_fdw_owner;
GRANT USAGE ON FOREIGN SERVER persist TO regress_fdw_owner;
GRANT CREATE ON SCHEMA public TO regress_fdw_owner;
SET ROLE regress_fdw_owner;
CREATE FOREIGN TABLE owned (id bigint NOT NULL, note text) SERVER persist
    OPTIONS (primary_key 'id');
INSERT INTO owned VALUES (1, 'mine');
SELECT * FROM owned;
RESET ROLE;
SELECT c.relowner::regrole AS rows_owner
FROM pg_foreign_table t, pg_options_to_table(t.ftoptions) o, pg_class c
WHERE t.ftrelid = 'owned'::regclass AND o.option_name = 'rows_table'
  AND c.relname = o.option_value;
-- ALTER ... OWNER TO hands the rows table over too.
ALTER FOREIGN TABLE owned OWNER TO regress_fdw_reader;
SELECT c.relowner::regrole AS rows_owner
FROM pg_foreign_table t, pg_options_to_table(t.ftoptions) o, pg_class c
WHERE t.ftrelid = 'owned'::regclass AND o.option_name = 'rows_table'
  AND c.relname = o.option_value;
SELECT * FROM owned;

-- A composite primary key.
CREATE FOREIGN TABLE playlist_track (playlist_id integer NOT NULL, track_id integer NOT NULL)
    SERVER persist OPTIONS (primary_key 'playlist_id, track_id');
INSERT INTO playlist_track VALUES (1, 1), (1, 2), (2, 1);
SELECT * FROM playlist_track ORDER BY 1, 2;
INSERT INTO playlist_track VALUES (1, 2);
\echo :SQLSTATE

-- DROP drops the rows tables with the tables.
SELECT count(*) AS rows_tables FROM pg_tables WHERE schemaname = 'persist_rows';
DROP FOREIGN TABLE customer, owned, playlist_track;
SELECT count(*) AS rows_tables FROM pg_tables WHERE schemaname = 'persist_rows';
DROP OWNED BY regress_fdw_reader, regress_fdw_owner;
DROP ROLE regress_fdw_reader, regress_fdw_owner;
DROP EXTENSION persist;
