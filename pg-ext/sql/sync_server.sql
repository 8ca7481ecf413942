-- The zero-knowledge sync server: ciphertext-only tables and the functions
-- that push and pull them.
--
-- A store is known to the server only by its random 16-byte id and the
-- SHA-256 hash of its write token. A record is known by its blind record id,
-- the hybrid logical clock value and device id of its last write, and its
-- envelope. Nothing here names a table or a column, holds plaintext, or is
-- derived from a key the server could know.
--
-- Every key and unique constraint starts with store_id, and sequence numbers
-- count per store, so both tables can be distributed by store_id (for example
-- with Citus: SELECT create_distributed_table('persist.sync_records',
-- 'store_id', colocate_with => 'persist.sync_stores')).
--
-- The functions are SECURITY DEFINER with a fixed search_path: a role that
-- has been granted EXECUTE on them, and nothing else, can sync, while the
-- tables themselves stay closed to it.

CREATE TABLE persist.sync_stores (
    store_id bytea PRIMARY KEY CHECK (length(store_id) = 16),
    token_hash bytea NOT NULL CHECK (length(token_hash) = 32),
    next_seq bigint NOT NULL DEFAULT 1 CHECK (next_seq > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE persist.sync_records (
    store_id bytea NOT NULL REFERENCES persist.sync_stores (store_id),
    record_id bytea NOT NULL CHECK (length(record_id) = 16),
    clock bigint NOT NULL CHECK (clock >= 0),
    device_id bytea NOT NULL CHECK (length(device_id) = 16),
    envelope bytea NOT NULL,
    padded_size integer NOT NULL,
    seq bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, record_id),
    UNIQUE (store_id, seq)
);

-- The random id of this server, made when the extension is created. Clients
-- keep one pull cursor per server id, so pointing a device at another server
-- starts that server's cursor at the beginning.
CREATE TABLE persist.sync_server (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
);
INSERT INTO persist.sync_server DEFAULT VALUES;

REVOKE ALL ON persist.sync_stores, persist.sync_records, persist.sync_server FROM PUBLIC;

-- pg_dump leaves out the rows of an extension's tables unless the extension
-- marks them; these hold the synced data, so they must be in every dump. The
-- call only works inside CREATE EXTENSION, so applying this file with psql
-- (where the tables are ordinary ones and are dumped anyway) skips it. The
-- server id is not dumped: a restored database gets a new one, so devices
-- treat it as a new server and send it everything they hold.
DO $$
BEGIN
    -- Only an extension owns its member objects; outside CREATE EXTENSION
    -- the tables belong to no extension.
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
          AND d.objid = 'persist.sync_stores'::regclass
          AND d.deptype = 'e'
    ) THEN
        PERFORM pg_catalog.pg_extension_config_dump('persist.sync_stores', '');
        PERFORM pg_catalog.pg_extension_config_dump('persist.sync_records', '');
    END IF;
END;
$$;

CREATE FUNCTION persist.sync_server_id()
RETURNS uuid
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$ SELECT id FROM persist.sync_server $$;

-- Checks a store's write token. The first call for a store id registers the
-- store with the token it brings; every later call must bring the same
-- token. Store ids are random 128-bit values that only the store's devices
-- know, so no one else can claim one first.
CREATE FUNCTION persist.sync_authorize(p_store_id bytea, p_token bytea)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
DECLARE
    stored bytea;
BEGIN
    IF p_store_id IS NULL OR length(p_store_id) <> 16 THEN
        RAISE EXCEPTION 'persist sync: store id must be 16 bytes, got %',
            coalesce(length(p_store_id)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_token IS NULL OR length(p_token) <> 32 THEN
        RAISE EXCEPTION 'persist sync: write token must be 32 bytes, got %',
            coalesce(length(p_token)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO persist.sync_stores (store_id, token_hash)
    VALUES (p_store_id, sha256(p_token))
    ON CONFLICT (store_id) DO NOTHING;
    SELECT token_hash INTO stored FROM persist.sync_stores WHERE store_id = p_store_id;
    IF stored IS NULL OR stored <> sha256(p_token) THEN
        RAISE EXCEPTION 'persist sync: wrong write token for this store'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END;
$$;

-- Stores a batch of records with last-write-wins by (clock, device_id), the
-- order persist-core's sync::Version defines: a record replaces the stored
-- one only if its version is strictly greater, so replaying a batch changes
-- nothing. Every accepted record gets the store's next sequence number.
-- Returns the accepted records with their sequence numbers.
CREATE FUNCTION persist.push(
    p_store_id bytea,
    p_token bytea,
    p_record_ids bytea[],
    p_clocks bigint[],
    p_device_ids bytea[],
    p_envelopes bytea[])
RETURNS TABLE (record_id bytea, seq bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
#variable_conflict use_column
DECLARE
    first_seq bigint;
    batch_size integer := coalesce(cardinality(p_record_ids), 0);
    bad integer;
BEGIN
    PERFORM persist.sync_authorize(p_store_id, p_token);
    IF coalesce(cardinality(p_clocks), 0) <> batch_size
        OR coalesce(cardinality(p_device_ids), 0) <> batch_size
        OR coalesce(cardinality(p_envelopes), 0) <> batch_size THEN
        RAISE EXCEPTION 'persist.push: the four arrays have different lengths (%, %, %, %)',
            batch_size, coalesce(cardinality(p_clocks), 0), coalesce(cardinality(p_device_ids), 0),
            coalesce(cardinality(p_envelopes), 0)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size > 10000 THEN
        RAISE EXCEPTION 'persist.push: batch of % records, over the limit of 10000', batch_size
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    SELECT min(i) INTO bad
    FROM unnest(p_record_ids, p_clocks, p_device_ids, p_envelopes)
        WITH ORDINALITY AS r(record_id, clock, device_id, envelope, i)
    WHERE r.record_id IS NULL OR length(r.record_id) <> 16
       OR r.device_id IS NULL OR length(r.device_id) <> 16
       OR r.clock IS NULL OR r.clock < 0
       OR r.envelope IS NULL OR length(r.envelope) < 33 OR length(r.envelope) > 69206049;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'persist.push: record % of the batch is invalid: expected a 16-byte record id, '
            'a clock value >= 0, a 16-byte device id and an envelope of 33 to 69206049 bytes '
            '(the largest a format version 1 writer makes)', bad
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The row lock orders concurrent pushes to one store, so sequence
    -- numbers become visible in increasing order and a pull never skips one.
    UPDATE persist.sync_stores s
    SET next_seq = s.next_seq + batch_size
    WHERE s.store_id = p_store_id
    RETURNING s.next_seq - batch_size INTO first_seq;

    RETURN QUERY
    WITH batch AS (
        -- Within one batch, only the greatest version of a record counts.
        SELECT DISTINCT ON (r.record_id) r.record_id, r.clock, r.device_id, r.envelope
        FROM unnest(p_record_ids, p_clocks, p_device_ids, p_envelopes)
            AS r(record_id, clock, device_id, envelope)
        ORDER BY r.record_id, r.clock DESC, r.device_id DESC
    ), numbered AS (
        SELECT b.*, first_seq + row_number() OVER (ORDER BY b.record_id) - 1 AS new_seq
        FROM batch b
    )
    INSERT INTO persist.sync_records AS stored
        (store_id, record_id, clock, device_id, envelope, padded_size, seq)
    SELECT p_store_id, n.record_id, n.clock, n.device_id, n.envelope, length(n.envelope), n.new_seq
    FROM numbered n
    ON CONFLICT (store_id, record_id) DO UPDATE
        SET clock = excluded.clock,
            device_id = excluded.device_id,
            envelope = excluded.envelope,
            padded_size = excluded.padded_size,
            seq = excluded.seq,
            received_at = now()
        WHERE (stored.clock, stored.device_id) < (excluded.clock, excluded.device_id)
    RETURNING stored.record_id, stored.seq;
END;
$$;

-- Returns up to p_limit records of a store with a sequence number above
-- p_after, in sequence order. A client pages by passing the last sequence
-- number it received.
CREATE FUNCTION persist.pull(p_store_id bytea, p_token bytea, p_after bigint, p_limit integer)
RETURNS TABLE (record_id bytea, clock bigint, device_id bytea, envelope bytea, seq bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
#variable_conflict use_column
BEGIN
    PERFORM persist.sync_authorize(p_store_id, p_token);
    IF p_after IS NULL OR p_after < 0 THEN
        RAISE EXCEPTION 'persist.pull: cursor must be a sequence number >= 0, got %',
            coalesce(p_after::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        RAISE EXCEPTION 'persist.pull: page size must be 1 to 10000, got %',
            coalesce(p_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT r.record_id, r.clock, r.device_id, r.envelope, r.seq
    FROM persist.sync_records r
    WHERE r.store_id = p_store_id AND r.seq > p_after
    ORDER BY r.seq
    LIMIT p_limit;
END;
$$;

-- The next sequence number the store will assign. A client whose cursor is
-- at or beyond it has pulled from a server that was since restored from an
-- older backup.
CREATE FUNCTION persist.sync_next_seq(p_store_id bytea, p_token bytea)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
BEGIN
    PERFORM persist.sync_authorize(p_store_id, p_token);
    RETURN (SELECT next_seq FROM persist.sync_stores WHERE store_id = p_store_id);
END;
$$;

-- The sequence number of one record of the store, or NULL when the server
-- does not have it. A device checks the record its cursor stopped at: on a
-- server that only moves forward, that record's number is the cursor's or a
-- later one; a smaller number or none means the server was restored from an
-- older backup.
CREATE FUNCTION persist.sync_record_seq(p_store_id bytea, p_token bytea, p_record_id bytea)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
#variable_conflict use_column
BEGIN
    PERFORM persist.sync_authorize(p_store_id, p_token);
    RETURN (SELECT r.seq FROM persist.sync_records r
            WHERE r.store_id = p_store_id AND r.record_id = p_record_id);
END;
$$;

-- The pairing mailbox. A device that accepted an invite posts its response
-- here, the inviting device picks it up at its next sync and posts the
-- keyring message, and the new device fetches that and deletes the row once
-- it has created its store.
-- Both are opaque bytes: the response contains an invite id, a one-time X25519
-- public key and a MAC, and the message is AES-256-GCM ciphertext under a
-- key derived from a secret the server never sees.
--
-- A mailbox is named by its mailbox id, which both devices derive from the
-- invite's one-time secret (HKDF-SHA256, docs/FORMAT.md section 13.7). The
-- invite id is not secret: the server sees it inside every response and
-- clients name it in errors. The mailbox id is the capability to use a
-- mailbox, so these functions take no write token and say nothing about
-- which store an invite belongs to, and a role that knows only an invite id
-- cannot read, take, replace or discard that invite's mailbox.
--
-- Every caller of pairing_post_response can create a row, so the table is
-- capped at 1,000 unexpired rows, each at most 81 + 65,536 bytes and
-- deleted at its expiry (at most one day ahead): about 64 MiB in all. A
-- role that fills the table blocks new pairings until its rows expire, but
-- it cannot make the table grow; grant the functions only to the roles
-- your devices use. Rows past their expiry are deleted by every call.
CREATE TABLE persist.pairing_mailbox (
    mailbox_id bytea PRIMARY KEY CHECK (length(mailbox_id) = 16),
    response bytea NOT NULL CHECK (length(response) = 81),
    message bytea CHECK (length(message) BETWEEN 45 AND 65536),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON persist.pairing_mailbox FROM PUBLIC;

CREATE FUNCTION persist.pairing_check_mailbox_id(p_mailbox_id bytea)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, persist
AS $$
BEGIN
    IF p_mailbox_id IS NULL OR length(p_mailbox_id) <> 16 THEN
        RAISE EXCEPTION 'persist pairing: mailbox id must be 16 bytes, got %',
            coalesce(length(p_mailbox_id)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- Posts a response to an invite. p_expires is the invite's expiry in Unix
-- seconds; the row lives until then, and at most one day. Fails when the
-- mailbox already holds a response or the table holds 1,000 rows.
CREATE FUNCTION persist.pairing_post_response(p_mailbox_id bytea, p_response bytea, p_expires bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
DECLARE
    max_rows constant integer := 1000;
    expires timestamptz;
BEGIN
    PERFORM persist.pairing_check_mailbox_id(p_mailbox_id);
    IF p_response IS NULL OR length(p_response) <> 81 THEN
        RAISE EXCEPTION 'persist pairing: a response must be 81 bytes, got %',
            coalesce(length(p_response)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    expires := least(to_timestamp(coalesce(p_expires, 0)), now() + interval '1 day');
    IF expires <= now() THEN
        RAISE EXCEPTION 'persist pairing: the invite expired at %', to_timestamp(coalesce(p_expires, 0))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Concurrent posts wait here, so the count below cannot go past the cap.
    LOCK TABLE persist.pairing_mailbox IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM persist.pairing_mailbox WHERE expires_at <= now();
    IF (SELECT count(*) FROM persist.pairing_mailbox) >= max_rows THEN
        RAISE EXCEPTION 'persist pairing: the mailbox table is full (% unexpired responses); try again after some invites expire, within one day at most', max_rows
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    INSERT INTO persist.pairing_mailbox (mailbox_id, response, expires_at)
    VALUES (p_mailbox_id, p_response, expires)
    ON CONFLICT (mailbox_id) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'persist pairing: the mailbox already holds a response to this invite; an invite admits one device, so ask for a new invite'
            USING ERRCODE = 'unique_violation';
    END IF;
END;
$$;

-- Returns the response waiting for the inviting device, or NULL.
CREATE FUNCTION persist.pairing_get_response(p_mailbox_id bytea)
RETURNS bytea
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
BEGIN
    PERFORM persist.pairing_check_mailbox_id(p_mailbox_id);
    DELETE FROM persist.pairing_mailbox WHERE expires_at <= now();
    RETURN (SELECT m.response FROM persist.pairing_mailbox m
            WHERE m.mailbox_id = p_mailbox_id AND m.message IS NULL);
END;
$$;

-- Posts the keyring message for an invite whose response is waiting.
CREATE FUNCTION persist.pairing_post_message(p_mailbox_id bytea, p_message bytea)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
BEGIN
    PERFORM persist.pairing_check_mailbox_id(p_mailbox_id);
    IF p_message IS NULL OR length(p_message) NOT BETWEEN 45 AND 65536 THEN
        RAISE EXCEPTION 'persist pairing: a keyring message must be 45 to 65536 bytes, got %',
            coalesce(length(p_message)::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE persist.pairing_mailbox m SET message = p_message
    WHERE m.mailbox_id = p_mailbox_id AND m.message IS NULL AND m.expires_at > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'persist pairing: the mailbox holds no response waiting for a message for this invite'
            USING ERRCODE = 'no_data_found';
    END IF;
END;
$$;

-- Removes an invite's mailbox: the inviting device calls it after it
-- rejected the response, and the new device after it created its store
-- from the keyring message.
CREATE FUNCTION persist.pairing_discard(p_mailbox_id bytea)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
BEGIN
    PERFORM persist.pairing_check_mailbox_id(p_mailbox_id);
    DELETE FROM persist.pairing_mailbox m
    WHERE m.mailbox_id = p_mailbox_id OR m.expires_at <= now();
END;
$$;

-- Returns the keyring message of an invite without deleting it, so that a
-- new device that fails to create its store can fetch it again; the device
-- calls pairing_discard once its store exists. state is 'ready' with the
-- message, 'waiting' while the inviting device has not posted it, and
-- 'missing' when there is no mailbox (expired, discarded or never posted).
CREATE FUNCTION persist.pairing_get_message(p_mailbox_id bytea)
RETURNS TABLE (state text, message bytea)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, persist
AS $$
#variable_conflict use_column
DECLARE
    found_message bytea;
BEGIN
    PERFORM persist.pairing_check_mailbox_id(p_mailbox_id);
    DELETE FROM persist.pairing_mailbox m WHERE m.expires_at <= now();
    SELECT m.message INTO found_message FROM persist.pairing_mailbox m
    WHERE m.mailbox_id = p_mailbox_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing'::text, NULL::bytea;
    ELSIF found_message IS NULL THEN
        RETURN QUERY SELECT 'waiting'::text, NULL::bytea;
    ELSE
        RETURN QUERY SELECT 'ready'::text, found_message;
    END IF;
END;
$$;

REVOKE ALL ON FUNCTION persist.sync_authorize(bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.sync_record_seq(bytea, bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.sync_server_id() FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.sync_next_seq(bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.push(bytea, bytea, bytea[], bigint[], bytea[], bytea[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.pull(bytea, bytea, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.pairing_check_mailbox_id(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.pairing_post_response(bytea, bytea, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.pairing_get_response(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.pairing_post_message(bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.pairing_discard(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION persist.pairing_get_message(bytea) FROM PUBLIC;
