-- Encrypted tables survive pg_dump and a restore: the dump contains the
-- foreign table with its options and the rows table with its ciphertext, and
-- the restore brings back the same rows without encrypting anything again.
--
-- The shell commands run pg_dump, pg_restore and psql from PATH against this
-- cluster (PGHOST and PGPORT come from scripts/test-pg.sh) and print only
-- on failure.
CREATE EXTENSION persist;
SELECT persist.init('dump')::jsonb -> 'created' AS created;
CREATE ROLE regress_dump_owner;
GRANT USAGE ON FOREIGN SERVER persist TO regress_dump_owner;
GRANT CREATE ON SCHEMA public TO regress_dump_owner;
SET ROLE regress_dump_owner;
CREATE FOREIGN TABLE patient (id uuid NOT NULL, name text NOT NULL, born date, notes text[])
    SERVER persist OPTIONS (primary_key 'id');
CREATE FOREIGN TABLE visit (patient_id uuid NOT NULL, seen timestamptz NOT NULL,
                            cost numeric(8,2))
    SERVER persist OPTIONS (primary_key 'patient_id, seen');
INSERT INTO patient VALUES
    ('00000000-0000-0000-0000-000000000001', 'Ada Lovelace', '1815-12-10', '{math}'),
    ('00000000-0000-0000-0000-000000000002', 'Alan Turing', '1912-06-23', NULL);
INSERT INTO visit SELECT '00000000-0000-0000-0000-000000000001',
                         '2024-01-01 09:00+00'::timestamptz + g * interval '1 day', g
FROM generate_series(1, 50) g;
RESET ROLE;
ALTER FOREIGN TABLE visit ADD COLUMN room text;
UPDATE visit SET room = 'A' WHERE cost = 7;

-- Fingerprints of the stored ciphertext and of the decrypted rows.
CREATE FUNCTION stored_fingerprint() RETURNS TABLE (tables bigint, rows bigint, digest text)
LANGUAGE plpgsql AS $$
DECLARE
    rows_table text;
    total bigint := 0;
    parts text := '';
    part text;
    counted bigint;
BEGIN
    FOR rows_table IN SELECT tablename FROM pg_tables WHERE schemaname = 'persist_rows'
                      ORDER BY tablename LOOP
        EXECUTE format('SELECT count(*), md5(string_agg(rid || env, ''''::bytea ORDER BY rid)::text) FROM persist_rows.%I', rows_table)
            INTO counted, part;
        total := total + counted;
        parts := parts || coalesce(part, '');
    END LOOP;
    RETURN QUERY SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'persist_rows'),
                        total, md5(parts);
END
$$;
SELECT tables, rows, digest AS stored_digest FROM stored_fingerprint() \gset
SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) AS patient_digest FROM patient p \gset
SELECT md5(string_agg(v::text, ',' ORDER BY v.seen)) AS visit_digest FROM visit v \gset
SELECT :tables AS rows_tables, :rows AS stored_rows;

-- A custom-format dump restored with pg_restore.
\setenv REGRESS_DUMP_DIR :tmpdir
\! pg_dump --format=custom --file="$REGRESS_DUMP_DIR/regress.dump" persist_regress || echo "pg_dump failed"
CREATE DATABASE regress_restored_custom;
\! pg_restore --exit-on-error --dbname=regress_restored_custom "$REGRESS_DUMP_DIR/regress.dump" || echo "pg_restore failed"
-- A plain dump restored with psql.
\! pg_dump --format=plain --file="$REGRESS_DUMP_DIR/regress.sql" persist_regress || echo "pg_dump failed"
CREATE DATABASE regress_restored_plain;
\! psql -X -q -v ON_ERROR_STOP=1 --dbname=regress_restored_plain --file="$REGRESS_DUMP_DIR/regress.sql" >/dev/null || echo "psql failed"

\c regress_restored_custom
SELECT persist.init('dump')::jsonb -> 'created' AS created;
-- The same ciphertext: nothing was encrypted again, no rows table was added.
SELECT tables = :tables AS same_tables, rows = :rows AS same_rows,
       digest = :'stored_digest' AS same_ciphertext
FROM stored_fingerprint();
SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) = :'patient_digest' AS same_patients
FROM patient p;
SELECT md5(string_agg(v::text, ',' ORDER BY v.seen)) = :'visit_digest' AS same_visits
FROM visit v;
SELECT name, born FROM patient WHERE id = '00000000-0000-0000-0000-000000000002';
SELECT cost, room FROM visit
WHERE patient_id = '00000000-0000-0000-0000-000000000001' AND seen = '2024-01-08 09:00+00';
EXPLAIN (COSTS OFF) SELECT name FROM patient WHERE id = '00000000-0000-0000-0000-000000000002';
-- Owners and the dependency that drops the rows with the table came back.
SELECT c.relname AS encrypted_table, c.relowner::regrole AS owner,
       r.relowner::regrole AS rows_owner, d.deptype
FROM pg_foreign_table t
JOIN pg_class c ON c.oid = t.ftrelid
CROSS JOIN LATERAL pg_options_to_table(t.ftoptions) o
JOIN pg_class r ON r.relname = o.option_value AND o.option_name = 'rows_table'
LEFT JOIN pg_depend d ON d.objid = r.oid AND d.refobjid = c.oid
ORDER BY 1;
-- The restored tables are writable.
INSERT INTO patient VALUES ('00000000-0000-0000-0000-000000000003', 'Grace Hopper', NULL, NULL);
UPDATE patient SET born = '1906-12-09' WHERE id = '00000000-0000-0000-0000-000000000003';
SELECT count(*) AS patients FROM patient;
DROP FOREIGN TABLE visit;
SELECT count(*) AS rows_tables FROM pg_tables WHERE schemaname = 'persist_rows';

\c regress_restored_plain
SELECT persist.init('dump')::jsonb -> 'created' AS created;
SELECT tables = :tables AS same_tables, rows = :rows AS same_rows,
       digest = :'stored_digest' AS same_ciphertext
FROM stored_fingerprint();
SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) = :'patient_digest' AS same_patients
FROM patient p;
SELECT md5(string_agg(v::text, ',' ORDER BY v.seen)) = :'visit_digest' AS same_visits
FROM visit v;

\c persist_regress
DROP DATABASE regress_restored_custom;
DROP DATABASE regress_restored_plain;
\! rm -f "$REGRESS_DUMP_DIR/regress.dump" "$REGRESS_DUMP_DIR/regress.sql"
DROP FUNCTION stored_fingerprint;
DROP FOREIGN TABLE patient, visit;
DROP OWNED BY regress_dump_owner;
DROP ROLE regress_dump_owner;
DROP EXTENSION persist;
