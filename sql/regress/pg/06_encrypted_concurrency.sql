-- Encrypted tables under concurrent sessions.
--
-- dblink opens two more sessions, a and b, on this database through the
-- cluster's Unix socket. Session b's statements that must wait run
-- asynchronously (dblink_send_query); wait_for_lock() then polls until b
-- waits for a lock, at most 10 seconds, so each step happens in a fixed
-- order. The scan of an UPDATE or DELETE target locks the rows it returns,
-- so concurrent changes of one row behave as on a heap table: under READ
-- COMMITTED the second update reads the first one's result (no lost
-- update), and under REPEATABLE READ it fails with a serialization failure.
CREATE EXTENSION persist;
CREATE EXTENSION dblink;
SELECT persist.init('concurrency')::jsonb -> 'created' AS created;
CREATE FOREIGN TABLE counter (id integer NOT NULL, n integer NOT NULL, note text)
    SERVER persist OPTIONS (primary_key 'id');
INSERT INTO counter VALUES (1, 0, NULL), (2, 0, NULL), (3, 0, NULL);

CREATE FUNCTION wait_for_lock(app text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1 .. 200 LOOP
        PERFORM pg_stat_clear_snapshot();
        IF EXISTS (SELECT FROM pg_stat_activity
                   WHERE application_name = app AND wait_event_type = 'Lock') THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;

SELECT format('host=%s port=%s dbname=%s user=%s application_name=',
              current_setting('unix_socket_directories'), current_setting('port'),
              current_database(), current_user) AS conn \gset
SELECT dblink_connect('a', :'conn' || 'regress_a') AS a,
       dblink_connect('b', :'conn' || 'regress_b') AS b;
SELECT * FROM dblink('a', 'SELECT persist.init(''concurrency'')::jsonb -> ''created''')
    AS t(created jsonb);
SELECT * FROM dblink('b', 'SELECT persist.init(''concurrency'')::jsonb -> ''created''')
    AS t(created jsonb);

-- READ COMMITTED, primary key lookups: b waits for a, then increments a's
-- result.
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'UPDATE counter SET n = n + 1 WHERE id = 1');
SELECT dblink_send_query('b', 'UPDATE counter SET n = n + 1 WHERE id = 1');
SELECT wait_for_lock('regress_b') AS b_waits;
SELECT dblink_exec('a', 'COMMIT');
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT id, n FROM counter WHERE id = 1;

-- READ COMMITTED, full scans: the same with a qual that is no key.
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'UPDATE counter SET n = n + 10 WHERE n >= 0');
SELECT dblink_send_query('b', 'UPDATE counter SET n = n * 2 WHERE n >= 0');
SELECT wait_for_lock('regress_b') AS b_waits;
SELECT dblink_exec('a', 'COMMIT');
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT id, n FROM counter ORDER BY id;

-- A row that no longer passes the qual after the other session's update is
-- left alone, as in a heap table.
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'UPDATE counter SET note = ''taken'' WHERE id = 2');
SELECT dblink_send_query('b',
    'UPDATE counter SET note = ''mine'' WHERE id = 2 AND note IS NULL');
SELECT wait_for_lock('regress_b') AS b_waits;
SELECT dblink_exec('a', 'COMMIT');
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT id, note FROM counter WHERE id = 2;

-- DELETE waits too, and then deletes the updated row.
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'UPDATE counter SET n = n + 1 WHERE id = 3');
SELECT dblink_send_query('b', 'DELETE FROM counter WHERE id = 3 RETURNING n');
SELECT wait_for_lock('regress_b') AS b_waits;
SELECT dblink_exec('a', 'COMMIT');
SELECT * FROM dblink_get_result('b') AS t(n integer);
SELECT * FROM dblink_get_result('b') AS t(n integer);
SELECT count(*) AS rows_with_id_3 FROM counter WHERE id = 3;
INSERT INTO counter VALUES (3, 0, NULL);

-- REPEATABLE READ: b's snapshot predates a's update, so b's update of the
-- same row fails with SQLSTATE 40001, as on a heap table.
SELECT dblink_exec('b', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('b', 'SELECT n FROM counter WHERE id = 1') AS t(n integer);
SELECT dblink_exec('a', 'UPDATE counter SET n = n + 1 WHERE id = 1');
SELECT dblink_exec('b', 'UPDATE counter SET n = n + 1 WHERE id = 1', false) AS b_update;
SELECT dblink_error_message('b');
SELECT dblink_exec('b', 'ROLLBACK');
SELECT id, n FROM counter WHERE id = 1;

-- SELECT ... FOR UPDATE locks the row; NOWAIT fails at once with 55P03,
-- SKIP LOCKED skips it.
SELECT dblink_exec('a', 'BEGIN');
SELECT * FROM dblink('a', 'SELECT id, n FROM counter WHERE id = 1 FOR UPDATE')
    AS t(id integer, n integer);
-- The message names the rows table, whose random name is replaced here.
SET client_min_messages = warning;
SELECT dblink_exec('b', 'SELECT id FROM counter WHERE id = 1 FOR UPDATE NOWAIT', false)
    AS b_nowait;
RESET client_min_messages;
SELECT regexp_replace(dblink_error_message('b'), 'r_[0-9a-f]{16}', 'r_<random>') AS message;
SELECT * FROM dblink('b', 'SELECT id FROM counter FOR UPDATE SKIP LOCKED')
    AS t(id integer) ORDER BY id;
SELECT dblink_send_query('b', 'UPDATE counter SET n = 100 WHERE id = 1');
SELECT wait_for_lock('regress_b') AS b_waits;
SELECT dblink_exec('a', 'COMMIT');
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT id, n FROM counter WHERE id = 1;

-- Two sessions insert the same key: the second waits for the first and
-- fails with 23505 once the first commits, or succeeds if it rolls back.
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'INSERT INTO counter VALUES (7, 1, ''a'')');
SELECT dblink_send_query('b', 'INSERT INTO counter VALUES (7, 2, ''b'')');
SELECT wait_for_lock('regress_b') AS b_waits;
SELECT dblink_exec('a', 'COMMIT');
SELECT * FROM dblink_get_result('b', false) AS t(status text);
SELECT dblink_error_message('b');
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT dblink_exec('a', 'BEGIN');
SELECT dblink_exec('a', 'INSERT INTO counter VALUES (8, 1, ''a'')');
SELECT dblink_send_query('b', 'INSERT INTO counter VALUES (8, 2, ''b'')');
SELECT wait_for_lock('regress_b') AS b_waits;
SELECT dblink_exec('a', 'ROLLBACK');
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT * FROM dblink_get_result('b') AS t(status text);
SELECT id, n, note FROM counter WHERE id IN (7, 8) ORDER BY id;

SELECT dblink_disconnect('a'), dblink_disconnect('b');
DROP FUNCTION wait_for_lock;
DROP FOREIGN TABLE counter;
DROP EXTENSION dblink;
DROP EXTENSION persist;
