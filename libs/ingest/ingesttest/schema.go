// Package ingesttest holds the sample catalogue that the runner's ingestion
// tests and the end-to-end tests both extract, so that they assert against
// one schema: tables with comments, a composite primary key, a named foreign
// key, a view, a table and a schema that recipes deny, and a few rows for
// row counts.
package ingesttest

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/libs/dbtest"
)

// PostgresSchema creates the catalogue in a PostgreSQL database: schemas
// shop (kept) and scratch (denied by the tests' schema_pattern).
const PostgresSchema = `
CREATE SCHEMA shop;
CREATE SCHEMA scratch;
CREATE TABLE shop.customers (id int PRIMARY KEY, email text NOT NULL, note varchar(20));
COMMENT ON TABLE shop.customers IS 'People who buy';
COMMENT ON COLUMN shop.customers.email IS 'Login address';
CREATE TABLE shop.orders (
	id bigint, line int, customer_id int NOT NULL, placed_at timestamptz, paid boolean,
	PRIMARY KEY (id, line),
	CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customers (id));
CREATE TABLE shop.tmp_orders (x int);
CREATE VIEW shop.big_orders AS SELECT id FROM shop.orders WHERE line > 1;
COMMENT ON VIEW shop.big_orders IS 'Multi-line orders';
CREATE TABLE scratch.junk (x int);
INSERT INTO shop.customers VALUES (1, 'a@example.com', NULL), (2, 'b@example.com', 'hi');
INSERT INTO shop.orders VALUES (10, 1, 1, now(), true);
`

// MariaDBSchema creates the same catalogue in a MariaDB database.
const MariaDBSchema = `
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL, note varchar(20)) COMMENT 'People who buy';
ALTER TABLE customers MODIFY email text NOT NULL COMMENT 'Login address';
CREATE TABLE orders (
	id bigint, line int, customer_id int NOT NULL, placed_at timestamp NULL, paid boolean,
	PRIMARY KEY (id, line),
	CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)) ENGINE=InnoDB;
CREATE TABLE tmp_orders (x int);
CREATE VIEW big_orders AS SELECT id FROM orders WHERE line > 1;
INSERT INTO customers VALUES (1, 'a@example.com', NULL), (2, 'b@example.com', 'hi');
INSERT INTO orders VALUES (10, 1, 1, now(), true);
`

// Load runs a schema script (statements ending in ";" and a newline) in db.
func Load(t testing.TB, db *dbtest.DB, script string) {
	t.Helper()
	for stmt := range strings.SplitSeq(script, ";\n") {
		if strings.TrimSpace(stmt) != "" {
			db.Exec(t, stmt)
		}
	}
}
