package harness

import (
	"fmt"
	"maps"
	"time"

	"github.com/outposthq/outpost/libs/testenv"
)

// StartMigrator starts another account-migrator replica of the plane,
// with instance id id and env added, and waits until it is ready. It
// returns the process and its API's base URL.
func (p *Plane) StartMigrator(id string, env map[string]string) (*Process, string) {
	p.t.Helper()
	port := testenv.FreePort(p.t)
	e := maps.Clone(p.migEnv)
	e["OUTPOST_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", port)
	e["OUTPOST_INSTANCE_ID"] = id
	// Its own address, unless env says otherwise.
	delete(e, "OUTPOST_INSTANCE_BASE_URL")
	maps.Copy(e, env)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	m := Start(p.t, id, "account-migrator", e)
	m.waitReady(api+"/readyz", 30*time.Second)
	return m, api
}

// StartScheduler starts a scheduler on the plane's broker and tenant, with
// instance id id and env added, and waits until it is ready. It returns
// the process and its API's base URL.
func (p *Plane) StartScheduler(id string, env map[string]string) (*Process, string) {
	p.t.Helper()
	port := testenv.FreePort(p.t)
	e := map[string]string{
		"OUTPOST_LISTEN":             fmt.Sprintf("127.0.0.1:%d", port),
		"OUTPOST_BROKER_URL":         p.BrokerURL,
		"OUTPOST_BROKER_CREDENTIALS": p.NATS.Creds(id, "-role", "scheduler"),
		"OUTPOST_TENANTS":            p.Tenant,
		"OUTPOST_DEFAULT_TENANT":     p.Tenant,
		"OUTPOST_INSTANCE_ID":        id,
	}
	maps.Copy(e, NewSigningKey(p.t, id).SignerEnv())
	AuthEnv(e, p.t.TempDir())
	maps.Copy(e, env)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	s := Start(p.t, id, "scheduler", e)
	s.waitReady(api+"/readyz", 30*time.Second)
	return s, api
}
