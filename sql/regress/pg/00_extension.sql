-- CREATE EXTENSION persist creates the schema persist as a member of the
-- extension, and DROP EXTENSION persist removes the schema with everything
-- in it.
CREATE EXTENSION persist;
SELECT persist.version() IS NOT NULL AS has_version;
SELECT extversion = persist.version() AS version_matches_extversion
FROM pg_extension WHERE extname = 'persist';
\dn persist
-- Every object the extension script creates belongs to the extension: the
-- device role's functions and metadata tables, and the sync server's tables
-- and functions.
SELECT pg_describe_object(classid, objid, objsubid) AS member
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'persist')
  AND deptype = 'e'
ORDER BY 1;
-- pg_dump keeps the rows of the metadata tables, which contain the sealed
-- keyrings.
SELECT config::regclass AS dumped_table
FROM pg_extension, unnest(extconfig) AS config
WHERE extname = 'persist'
ORDER BY config::regclass::text;
-- Only the extension's owner may read or change them until granted.
SELECT relname, relacl FROM pg_class
WHERE relnamespace = 'persist'::regnamespace AND relkind = 'r'
ORDER BY relname;
DROP EXTENSION persist;
\dn persist
SELECT count(*) AS persist_schemas FROM pg_namespace WHERE nspname = 'persist';
SELECT to_regclass('persist.stores') AS stores, to_regclass('persist.keyslots') AS keyslots,
       to_regclass('persist.sync_records') AS sync_records,
       to_regtype('persist.stores') AS stores_row_type;
SELECT count(*) AS persist_functions FROM pg_proc
WHERE proname IN ('init', 'encrypt', 'decrypt', 'export', 'status', 'close', 'push', 'pull')
  AND pronamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname = 'pg_catalog');
-- CREATE EXTENSION does not adopt a schema named persist that already
-- exists. It fails and leaves that schema alone.
CREATE SCHEMA persist;
CREATE EXTENSION persist;
SELECT count(*) AS persist_extensions FROM pg_extension WHERE extname = 'persist';
DROP SCHEMA persist;
