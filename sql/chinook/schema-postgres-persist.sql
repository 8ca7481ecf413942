-- Chinook schema as Persist encrypted tables (PostgreSQL extension).
--
-- The same tables, columns, types and NOT NULL constraints as
-- schema-postgres.sql, declared as foreign tables of server persist. A
-- foreign table cannot declare PRIMARY KEY, so option primary_key names the
-- key columns; the extension enforces the key and NOT NULL. There are no
-- foreign keys and no secondary indexes, because Postgres supports neither
-- on foreign tables. Run SELECT persist.init('<store>') first: each table's
-- rows are sealed with that store's keys.

CREATE FOREIGN TABLE genre (
    genre_id integer NOT NULL,
    name text
) SERVER persist OPTIONS (primary_key 'genre_id');

CREATE FOREIGN TABLE media_type (
    media_type_id integer NOT NULL,
    name text
) SERVER persist OPTIONS (primary_key 'media_type_id');

CREATE FOREIGN TABLE artist (
    artist_id integer NOT NULL,
    name text
) SERVER persist OPTIONS (primary_key 'artist_id');

CREATE FOREIGN TABLE album (
    album_id integer NOT NULL,
    title text NOT NULL,
    artist_id integer NOT NULL
) SERVER persist OPTIONS (primary_key 'album_id');

CREATE FOREIGN TABLE track (
    track_id integer NOT NULL,
    name text NOT NULL,
    album_id integer,
    media_type_id integer NOT NULL,
    genre_id integer,
    composer text,
    milliseconds integer NOT NULL,
    bytes integer,
    unit_price numeric(10,2) NOT NULL
) SERVER persist OPTIONS (primary_key 'track_id');

CREATE FOREIGN TABLE playlist (
    playlist_id integer NOT NULL,
    name text
) SERVER persist OPTIONS (primary_key 'playlist_id');

CREATE FOREIGN TABLE playlist_track (
    playlist_id integer NOT NULL,
    track_id integer NOT NULL
) SERVER persist OPTIONS (primary_key 'playlist_id, track_id');

CREATE FOREIGN TABLE employee (
    employee_id integer NOT NULL,
    last_name text NOT NULL,
    first_name text NOT NULL,
    title text,
    reports_to integer,
    birth_date timestamp,
    hire_date timestamp,
    address text,
    city text,
    state text,
    country text,
    postal_code text,
    phone text,
    fax text,
    email text
) SERVER persist OPTIONS (primary_key 'employee_id');

CREATE FOREIGN TABLE customer (
    customer_id integer NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    company text,
    address text,
    city text,
    state text,
    country text,
    postal_code text,
    phone text,
    fax text,
    email text NOT NULL,
    support_rep_id integer
) SERVER persist OPTIONS (primary_key 'customer_id');

CREATE FOREIGN TABLE invoice (
    invoice_id integer NOT NULL,
    customer_id integer NOT NULL,
    invoice_date timestamp NOT NULL,
    billing_address text,
    billing_city text,
    billing_state text,
    billing_country text,
    billing_postal_code text,
    total numeric(10,2) NOT NULL
) SERVER persist OPTIONS (primary_key 'invoice_id');

CREATE FOREIGN TABLE invoice_line (
    invoice_line_id integer NOT NULL,
    invoice_id integer NOT NULL,
    track_id integer NOT NULL,
    unit_price numeric(10,2) NOT NULL,
    quantity integer NOT NULL
) SERVER persist OPTIONS (primary_key 'invoice_line_id');
