-- Chinook schema as Persist encrypted tables (SQLite extension).
--
-- The same tables and columns as schema-sqlite.sql, declared with
-- USING persist(...). Encrypted tables enforce PRIMARY KEY and NOT NULL; they
-- have no secondary indexes and no foreign keys, because SQLite enforces
-- neither on virtual tables. Run persist_init first.
CREATE VIRTUAL TABLE genre USING persist(
    genre_id INTEGER PRIMARY KEY,
    name TEXT
);

CREATE VIRTUAL TABLE media_type USING persist(
    media_type_id INTEGER PRIMARY KEY,
    name TEXT
);

CREATE VIRTUAL TABLE artist USING persist(
    artist_id INTEGER PRIMARY KEY,
    name TEXT
);

CREATE VIRTUAL TABLE album USING persist(
    album_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    artist_id INTEGER NOT NULL
);

CREATE VIRTUAL TABLE track USING persist(
    track_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    album_id INTEGER,
    media_type_id INTEGER NOT NULL,
    genre_id INTEGER,
    composer TEXT,
    milliseconds INTEGER NOT NULL,
    bytes INTEGER,
    unit_price NUMERIC(10,2) NOT NULL
);

CREATE VIRTUAL TABLE playlist USING persist(
    playlist_id INTEGER PRIMARY KEY,
    name TEXT
);

CREATE VIRTUAL TABLE playlist_track USING persist(
    playlist_id INTEGER NOT NULL,
    track_id INTEGER NOT NULL,
    PRIMARY KEY (playlist_id, track_id)
);

CREATE VIRTUAL TABLE employee USING persist(
    employee_id INTEGER PRIMARY KEY,
    last_name TEXT NOT NULL,
    first_name TEXT NOT NULL,
    title TEXT,
    reports_to INTEGER,
    birth_date TEXT,
    hire_date TEXT,
    address TEXT,
    city TEXT,
    state TEXT,
    country TEXT,
    postal_code TEXT,
    phone TEXT,
    fax TEXT,
    email TEXT
);

CREATE VIRTUAL TABLE customer USING persist(
    customer_id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    company TEXT,
    address TEXT,
    city TEXT,
    state TEXT,
    country TEXT,
    postal_code TEXT,
    phone TEXT,
    fax TEXT,
    email TEXT NOT NULL,
    support_rep_id INTEGER
);

CREATE VIRTUAL TABLE invoice USING persist(
    invoice_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    invoice_date TEXT NOT NULL,
    billing_address TEXT,
    billing_city TEXT,
    billing_state TEXT,
    billing_country TEXT,
    billing_postal_code TEXT,
    total NUMERIC(10,2) NOT NULL
);

CREATE VIRTUAL TABLE invoice_line USING persist(
    invoice_line_id INTEGER PRIMARY KEY,
    invoice_id INTEGER NOT NULL,
    track_id INTEGER NOT NULL,
    unit_price NUMERIC(10,2) NOT NULL,
    quantity INTEGER NOT NULL
);
