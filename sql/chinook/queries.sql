-- Typical application queries on the Chinook demo data.
--
-- Each query follows a line "-- query: <name>" and runs on its own. The same
-- text runs in SQLite 3.40 and PostgreSQL 15 and prints the same rows with
-- `sqlite3 -separator '|'` and `psql -X -At -F '|'`, so the output of a plain
-- database can be compared with the output of an encrypted one. Portability
-- rules used below:
--   * Every ORDER BY ends in a unique key, so the row order is fixed.
--   * Sums of prices are computed in integer cents. SQLite stores NUMERIC(10,2)
--     values as REAL and prints 195.1 where PostgreSQL prints 195.10.
--   * LIKE is case-insensitive for ASCII in SQLite and case-sensitive in
--     PostgreSQL, so name searches use lower(name) LIKE '<lowercase pattern>'.
--   * Text sort keys only break ties after numeric keys. The checked output
--     was the same under PostgreSQL's C collation and ICU en-US.
-- NOTE: price columns printed as stored (total, unit_price) match only
-- because no value in this data set ends in a zero cent digit.

-- query: album_tracks_by_artist
SELECT t.track_id, t.name AS track_name, al.title AS album_title, ar.name AS artist_name
FROM track t
JOIN album al ON al.album_id = t.album_id
JOIN artist ar ON ar.artist_id = al.artist_id
WHERE ar.name = 'Antônio Carlos Jobim'
ORDER BY t.track_id;

-- query: sales_per_country
SELECT c.country,
       COUNT(*) AS invoice_count,
       SUM(CAST(ROUND(i.total * 100) AS INTEGER)) AS total_cents
FROM invoice i
JOIN customer c ON c.customer_id = i.customer_id
GROUP BY c.country
ORDER BY total_cents DESC, invoice_count DESC, c.country;

-- query: top_customers_by_total
SELECT c.customer_id, c.first_name, c.last_name,
       SUM(CAST(ROUND(i.total * 100) AS INTEGER)) AS total_cents
FROM customer c
JOIN invoice i ON i.customer_id = c.customer_id
GROUP BY c.customer_id, c.first_name, c.last_name
ORDER BY total_cents DESC, c.customer_id
LIMIT 5;

-- query: tracks_name_like_love
SELECT track_id, name
FROM track
WHERE lower(name) LIKE '%love%'
ORDER BY track_id;

-- query: customer_by_id
SELECT customer_id, first_name, last_name, company, address, city, state, country,
       postal_code, phone, fax, email, support_rep_id
FROM customer
WHERE customer_id = 5
ORDER BY customer_id;

-- query: customer_by_email
SELECT customer_id, first_name, last_name, city, country
FROM customer
WHERE email = 'stanisław.wójcik@wp.pl'
ORDER BY customer_id;

-- query: tracks_by_id_list
SELECT track_id, name, composer, milliseconds, bytes, unit_price
FROM track
WHERE track_id IN (1, 2, 3, 1000, 3402, 3503)
ORDER BY track_id;

-- query: playlist_track_by_key
SELECT pt.playlist_id, p.name AS playlist_name, pt.track_id, t.name AS track_name
FROM playlist_track pt
JOIN playlist p ON p.playlist_id = pt.playlist_id
JOIN track t ON t.track_id = pt.track_id
WHERE pt.playlist_id = 1 AND pt.track_id = 3402
ORDER BY pt.playlist_id, pt.track_id;

-- query: invoice_lines_of_customer
SELECT i.invoice_id, i.invoice_date, i.total,
       il.invoice_line_id, il.track_id, il.unit_price, il.quantity
FROM invoice i
JOIN invoice_line il ON il.invoice_id = i.invoice_id
WHERE i.customer_id = 5
ORDER BY i.invoice_id, il.invoice_line_id;

-- query: invoices_in_date_range
SELECT invoice_id, customer_id, invoice_date, billing_city, billing_country, total
FROM invoice
WHERE invoice_date >= '2009-01-01' AND invoice_date < '2009-02-01'
ORDER BY invoice_date, invoice_id;

-- query: customers_who_bought_genre
SELECT c.customer_id, c.first_name, c.last_name, c.country
FROM customer c
WHERE c.customer_id IN (
    SELECT i.customer_id
    FROM invoice i
    JOIN invoice_line il ON il.invoice_id = i.invoice_id
    JOIN track t ON t.track_id = il.track_id
    JOIN genre g ON g.genre_id = t.genre_id
    WHERE g.name = 'Jazz'
)
ORDER BY c.customer_id;

-- query: employees_with_manager
SELECT e.employee_id, e.first_name, e.last_name, e.title,
       m.employee_id AS manager_id, m.first_name AS manager_first_name,
       m.last_name AS manager_last_name
FROM employee e
LEFT JOIN employee m ON m.employee_id = e.reports_to
ORDER BY e.employee_id;
