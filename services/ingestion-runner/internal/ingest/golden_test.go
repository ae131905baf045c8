package ingest_test

import (
	"bytes"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/ingest/ingesttest"
)

// update rewrites the golden files: go test -run TestSinkGolden -update.
var update = flag.Bool("update", false, "rewrite the golden files of TestSinkGolden")

// goldenPostgres is a catalogue that spans more than one batch of
// tables, a second schema, a foreign key across schemas, views of both
// kinds, and comments that need escaping in JSON (HTML characters,
// quotes, control characters, non-ASCII).
const goldenPostgres = `
CREATE SCHEMA shop;
CREATE SCHEMA ledger;
CREATE TABLE ledger.accounts (code text PRIMARY KEY, opened date);
CREATE TABLE shop.customers (id int PRIMARY KEY, email text NOT NULL, note varchar(20), account text REFERENCES ledger.accounts (code));
COMMENT ON TABLE shop.customers IS E'People <b>who</b> buy & "pay"\n\ttabbed \\ back\x01slash, é✓ \u2028';
COMMENT ON COLUMN shop.customers.email IS 'Login <address>';
CREATE TABLE shop.orders (
	id bigint, line int, customer_id int NOT NULL, amount numeric(8,2), tags text[], doc jsonb, raw bytea, placed_at timestamptz,
	PRIMARY KEY (id, line),
	CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customers (id));
CREATE VIEW shop.big_orders AS SELECT id, amount FROM shop.orders WHERE line > 1;
COMMENT ON VIEW shop.big_orders IS 'Multi-line orders';
CREATE MATERIALIZED VIEW shop.order_totals AS SELECT customer_id, sum(amount) AS total FROM shop.orders GROUP BY customer_id;
CREATE VIEW shop.customer_accounts AS SELECT c.id, a.opened FROM shop.customers c JOIN ledger.accounts a ON a.code = c.account;
INSERT INTO ledger.accounts VALUES ('A-1', '2024-01-02'), ('B-2', NULL);
INSERT INTO shop.customers VALUES (1, 'a@example.com', NULL, 'A-1'), (2, 'b@example.com', 'hi <there>', 'B-2'), (3, 'c@example.com', 'hi', NULL);
INSERT INTO shop.orders VALUES (10, 1, 1, 12.50, '{a,b}', '{"k": 1}', '\x0102', '2024-05-06 07:08:09+00'), (10, 2, 1, 3.25, NULL, NULL, NULL, NULL), (11, 1, 2, 100.00, '{}', '[]', '\x', '2024-05-07 00:00:00+00');
DO $$ BEGIN FOR i IN 1..101 LOOP EXECUTE format('CREATE TABLE shop.gen_%s (k int PRIMARY KEY)', lpad(i::text, 3, '0')); END LOOP; END $$;
`

// goldenMariaDB is the same on MariaDB (one database: no schemas).
const goldenMariaDB = `
CREATE TABLE accounts (code varchar(10) PRIMARY KEY, opened date);
CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL COMMENT 'Login <address>', note varchar(20), account varchar(10),
	CONSTRAINT customers_account_fk FOREIGN KEY (account) REFERENCES accounts (code))
	COMMENT 'People <b>who</b> buy & "pay"\n\ttabbed \\ back\Zslash, é✓';
CREATE TABLE orders (
	id bigint, line int, customer_id int NOT NULL, amount decimal(8,2), doc json, raw blob, placed_at timestamp NULL, kind enum('a','b'),
	PRIMARY KEY (id, line),
	CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)) ENGINE=InnoDB;
CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE line > 1;
INSERT INTO accounts VALUES ('A-1', '2024-01-02'), ('B-2', NULL);
INSERT INTO customers VALUES (1, 'a@example.com', NULL, 'A-1'), (2, 'b@example.com', 'hi <there>', 'B-2'), (3, 'c@example.com', 'hi', NULL);
INSERT INTO orders VALUES (10, 1, 1, 12.50, '{"k": 1}', x'0102', '2024-05-06 07:08:09', 'a'), (10, 2, 1, 3.25, NULL, NULL, NULL, NULL), (11, 1, 2, 100.00, '[]', x'', '2024-05-07 00:00:00', 'b');
`

// goldenFull adds to a source what changes records: profiling with every
// metric, domains and every transformer (on the hand-written tables only).
const goldenFull = `
    table_pattern: {deny: ['.*\.gen_']}
    profiling: {enabled: true, field_sample_values_limit: 3}
    domain:
      "urn:li:domain:people": {allow: ['.*\.customers$']}
      "urn:li:domain:shop": {allow: ['.*']}
transformers:
  - type: simple_add_dataset_tags
    config: {tag_urns: ["urn:li:tag:Shop"]}
  - type: pattern_add_dataset_tags
    config: {tag_pattern: {rules: {".*orders.*": ["urn:li:tag:Orders"]}}}
  - type: pattern_add_dataset_ownership
    config:
      owner_pattern: {rules: {".*customers.*": ["urn:li:corpuser:crm"], ".*": ["urn:li:corpGroup:data"]}}
      ownership_type: TECHNICAL_OWNER
  - type: simple_add_dataset_ownership
    config: {owner_urns: ["urn:li:corpuser:x"], ownership_type: "urn:li:ownershipType:steward"}
  - type: simple_add_dataset_terms
    config: {term_urns: ["urn:li:glossaryTerm:Sales"]}
  - type: pattern_add_dataset_terms
    config: {term_pattern: {rules: {".*orders.*": ["urn:li:glossaryTerm:Orders"]}}}
  - type: set_dataset_browse_path
    config: {path_templates: [/ENV/PLATFORM/DATASET_PARTS, /ENV/PLATFORM]}
  - type: simple_add_dataset_properties
    config: {properties: {team: shop, "a<b": "c&d"}}
`

// TestSinkGolden pins the bytes the file, http and datahub-rest sinks
// write for both sources, plain and with profiling, domains and every
// transformer: the random database name and the container URNs (md5 of
// it) are normalized, nothing else.
func TestSinkGolden(t *testing.T) {
	for _, tc := range []struct {
		kind, schema, filter string
		db                   func(testing.TB) *dbtest.DB
	}{
		{"postgres", goldenPostgres, "schema_pattern: {allow: [shop, ledger]}", dbtest.SharedPostgres},
		{"mysql", goldenMariaDB, "", dbtest.SharedMariaDB},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			db := tc.db(t)
			ingesttest.Load(t, db, tc.schema)
			dir := t.TempDir()
			writeSecret(t, dir, "DB_PASSWORD", db.Password)
			source := fmt.Sprintf("pipeline_name: golden\nrun_id: golden-run\nsource:\n  type: %s\n  config:\n    host_port: %s\n    database: %s\n    username: %s\n    password: ${DB_PASSWORD}\n    %s\n",
				tc.kind, db.HostPort(), db.Database, db.User, tc.filter)
			var plainNames []string
			for _, variant := range []string{"plain", "full", "profiled"} {
				text := source
				switch variant {
				case "full":
					text += goldenFull
				case "profiled":
					// Profiles are read between pages of tables: every
					// table still comes once, in order.
					text += "    profiling: {enabled: true, profile_table_level_only: true}\n"
				}
				outFile := filepath.Join(t.TempDir(), "records.jsonl")
				res, out := run(t, newTask(dir, nil), text+fmt.Sprintf("sink: {type: file, config: {filename: %s}}\n", outFile))
				require.NoError(t, res.Err, out.text())
				if variant == "profiled" {
					var names []string
					for _, rec := range readLines(t, outFile) {
						names = append(names, rec["name"].(string))
					}
					require.Equal(t, plainNames, names)
					continue
				}
				raw, err := os.ReadFile(outFile)
				require.NoError(t, err)
				golden(t, fmt.Sprintf("%s-%s-file.jsonl", tc.kind, variant), normalize(string(raw), db.Database))
				if variant == "plain" {
					for _, rec := range readLines(t, outFile) {
						plainNames = append(plainNames, rec["name"].(string))
					}
				}
			}

			for _, sink := range []string{"http", "datahub-rest"} {
				rcv := &receiver{}
				srv := httptest.NewServer(rcv)
				cfg := fmt.Sprintf("{type: http, config: {url: '%s/hook', batch_size: 7}}", srv.URL)
				if sink == "datahub-rest" {
					cfg = fmt.Sprintf("{type: datahub-rest, config: {server: '%s', mode: ASYNC_BATCH, max_per_batch: 7}}", srv.URL)
				}
				res, out := run(t, newTask(dir, nil), source+goldenFull+"sink: "+cfg+"\n")
				srv.Close()
				require.NoError(t, res.Err, out.text())
				var b bytes.Buffer
				for _, r := range rcv.reqs {
					fmt.Fprintf(&b, "POST %s?%s\n%s\n", r.path, r.query, r.body)
				}
				golden(t, fmt.Sprintf("%s-full-%s.txt", tc.kind, sink), normalize(b.String(), db.Database))
			}
		})
	}
}

// golden compares got with testdata/golden/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to write it")
	if string(want) != got {
		// Name the first line that differs: the files are long.
		wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
		for i := range min(len(wl), len(gl)) {
			require.Equal(t, wl[i], gl[i], "%s: line %d", name, i+1)
		}
		require.Len(t, gl, len(wl), "%s: lines", name)
	}
}
