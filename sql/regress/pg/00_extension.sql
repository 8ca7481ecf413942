-- CREATE EXTENSION persist creates the schema persist as a member of the
-- extension, and DROP EXTENSION persist removes the schema with everything
-- in it.
CREATE EXTENSION persist;
SELECT persist.version() IS NOT NULL AS has_version;
SELECT extversion = persist.version() AS version_matches_extversion
FROM pg_extension WHERE extname = 'persist';
\dn persist
SELECT pg_describe_object(classid, objid, objsubid) AS member
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'persist')
  AND deptype = 'e'
  AND classid = 'pg_namespace'::regclass;
DROP EXTENSION persist;
\dn persist
SELECT count(*) AS persist_schemas FROM pg_namespace WHERE nspname = 'persist';
-- CREATE EXTENSION does not adopt a schema named persist that already
-- exists. It fails and leaves that schema alone.
CREATE SCHEMA persist;
CREATE EXTENSION persist;
SELECT count(*) AS persist_extensions FROM pg_extension WHERE extname = 'persist';
DROP SCHEMA persist;
