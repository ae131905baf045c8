package auth

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Event is the audit record of one mutating call.
type Event struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Principal string    `json:"principal"`
	Name      string    `json:"name,omitempty"`
	Tenant    string    `json:"tenant"`
	Action    string    `json:"action"`
	Target    string    `json:"target"`
	Status    int       `json:"status"`
	// Service is the API that served the call (set on events read back).
	Service string `json:"service,omitempty"`
}

// Result is "ok" for a 2xx/3xx status, "denied" for 401/403, else "failed".
func (e Event) Result() string {
	switch {
	case e.Status < 400:
		return "ok"
	case e.Status == 401 || e.Status == 403:
		return "denied"
	default:
		return "failed"
	}
}

// Publish sends an audit event somewhere durable (see QueueAudit).
type Publish func(ctx context.Context, e Event) error

// Auditor writes one structured log line per event, publishes it when
// given a Publish, and keeps the last events of each tenant for
// GET /api/v1/audit.
type Auditor struct {
	publish Publish
	log     *slog.Logger

	mu     sync.Mutex
	recent map[string][]Event
}

// publishTimeout bounds the publish of one audit event.
const publishTimeout = 2 * time.Second

// auditKeep is how many events per tenant the auditor keeps in memory.
const auditKeep = 1000

// NewAuditor returns an auditor; publish may be nil.
func NewAuditor(publish Publish, log *slog.Logger) *Auditor {
	if log == nil {
		log = slog.Default()
	}
	return &Auditor{publish: publish, log: log, recent: map[string][]Event{}}
}

// Record audits e.
func (a *Auditor) Record(ctx context.Context, e Event) {
	a.log.Info("audit", "principal", e.Principal, "name", e.Name, "tenant", e.Tenant, "action", e.Action,
		"target", e.Target, "result", e.Result(), "status", e.Status, "request_id", e.RequestID)
	a.mu.Lock()
	list := append(a.recent[e.Tenant], e)
	if len(list) > auditKeep {
		list = list[len(list)-auditKeep:]
	}
	a.recent[e.Tenant] = list
	a.mu.Unlock()
	if a.publish == nil {
		return
	}
	// The call has been answered: a slow broker delays only this
	// handler's return, bounded.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if err := a.publish(pctx, e); err != nil {
		a.log.Warn("publish audit event failed", "tenant", e.Tenant, "request_id", e.RequestID, "error", err)
	}
}

// Recent returns the tenant's last events this process recorded, oldest
// first.
func (a *Auditor) Recent(tenant string) []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Event(nil), a.recent[tenant]...)
}
