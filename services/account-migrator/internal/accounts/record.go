// Package accounts is the account record the migrator keeps in the KV
// bucket "accounts" and its lifecycle, as pure functions of a record, an
// event and the time, so that every transition of the table in
// docs/architecture.md is decided in one place and can be tested alone.
// Callers apply them inside kv.Mutate: the decision is made again on every
// compare-and-set retry, on the record as it is then.
package accounts

import (
	"encoding/json"
	"fmt"
	"time"

	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

// State is an account's lifecycle state, named as the API shows it.
type State string

// The states of the lifecycle.
const (
	Inactive     State = "INACTIVE"
	ToMigrate    State = "TO_MIGRATE"
	Activating   State = "ACTIVATING"
	Active       State = "ACTIVE"
	Failed       State = "FAILED"
	Orphaned     State = "ORPHANED"
	ToDeactivate State = "TO_DEACTIVATE"
	Deactivating State = "DEACTIVATING"
)

// AllStates lists the states in lifecycle order (for metrics).
var AllStates = []State{Inactive, ToMigrate, Activating, Active, Failed, Orphaned, ToDeactivate, Deactivating}

// Spec is what the watcher needs to watch the account.
type Spec struct {
	KubeconfigFile string `json:"kubeconfigFile,omitempty"`
	// KubeconfigSealed is the inline kubeconfig sealed with the
	// configured key (base64 in JSON); never plain text.
	KubeconfigSealed []byte   `json:"kubeconfigSealed,omitempty"`
	ServiceAccount   bool     `json:"serviceAccount,omitempty"`
	Context          string   `json:"context,omitempty"`
	Namespaces       []string `json:"namespaces,omitempty"`
	Kinds            []string `json:"kinds,omitempty"`
	OmitKinds        []string `json:"omitKinds,omitempty"`
}

// Cluster describes the cluster behind an account, as its watcher saw it.
type Cluster struct {
	Host                string `json:"host"`
	CAFingerprintSHA256 string `json:"caFingerprintSha256,omitempty"`
	ServerVersion       string `json:"serverVersion,omitempty"`
}

// Kind is one kind the watcher streams.
type Kind struct {
	Group      string `json:"group,omitempty"`
	Version    string `json:"version"`
	Kind       string `json:"kind"`
	Resource   string `json:"resource"`
	Namespaced bool   `json:"namespaced"`
	Token      string `json:"token"`
}

// Skipped is a kind the watcher could not watch.
type Skipped struct {
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// Holder is a (zone, generation) whose watcher must be told to let go.
type Holder struct {
	Zone       string `json:"zone"`
	Generation uint64 `json:"generation"`
}

// Record is one account.
type Record struct {
	Name   string `json:"name"`
	State  State  `json:"state"`
	ZoneID string `json:"zoneId,omitempty"`
	Spec   Spec   `json:"spec"`
	// Generation is bumped by every migration; watcher events of another
	// generation are ignored.
	Generation uint64 `json:"generation"`
	// Offered lists the zones the current generation was offered to when
	// the account had no zone; OfferFailures their FAILED causes.
	Offered       []string          `json:"offered,omitempty"`
	OfferFailures map[string]string `json:"offerFailures,omitempty"`
	// Release lists holders of an older generation to deactivate before
	// the next lease goes out (a re-migration of a held account).
	Release      []Holder  `json:"release,omitempty"`
	Agent        string    `json:"agent,omitempty"`
	FailedCount  int       `json:"failedCount"`
	ErrorMessage string    `json:"errorMessage,omitempty"`
	Cluster      *Cluster  `json:"cluster,omitempty"`
	Kinds        []Kind    `json:"kinds,omitempty"`
	Skipped      []Skipped `json:"skippedKinds,omitempty"`
	// StateSince is when the record entered its state: the clock of the
	// activation and deactivation timeouts and of the retry frequency.
	StateSince time.Time `json:"stateSince"`
	// Deleting marks a DELETE waiting for the account to become INACTIVE.
	Deleting bool `json:"deleting,omitempty"`
	// PurgePending is set when the account became INACTIVE and its
	// inventory still has to be purged.
	PurgePending bool `json:"purgePending,omitempty"`
	// Drift counts consecutive checksum mismatches by kind token.
	Drift map[string]int `json:"drift,omitempty"`
	// Permissions restrict who may read and operate the account (nil:
	// the tenant role alone).
	Permissions *Permissions `json:"permissions,omitempty"`
	// IgnoredFields names the Spinnaker definition fields the last
	// credentials request sent that Outpost does not use.
	IgnoredFields []string `json:"ignoredFields,omitempty"`
	// Source is "api", "auto" (automatic migration) or "credentials"
	// (Spinnaker's credentials API).
	Source string `json:"source,omitempty"`
	// History is the latest transitions, oldest first (at most
	// MaxHistory; records written before it was kept have none).
	History   []Transition `json:"history,omitempty"`
	CreatedAt time.Time    `json:"createdAt"`
	UpdatedAt time.Time    `json:"updatedAt"`
}

// Key is the record's KV key, "<tenant>.<account>".
func Key(tenant, account string) string { return tenant + "." + account }

// Decode parses a stored record.
func Decode(raw []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decode account record: %w", err)
	}
	return &r, nil
}

// Encode serialises r.
func (r *Record) Encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode account record %q: %w", r.Name, err)
	}
	return b, nil
}

// Clone returns a deep enough copy for a transition to change.
func (r *Record) Clone() *Record {
	c := *r
	c.Offered = append([]string(nil), r.Offered...)
	c.Release = append([]Holder(nil), r.Release...)
	c.Permissions = r.Permissions.clone()
	c.IgnoredFields = append([]string(nil), r.IgnoredFields...)
	if r.OfferFailures != nil {
		c.OfferFailures = make(map[string]string, len(r.OfferFailures))
		for k, v := range r.OfferFailures {
			c.OfferFailures[k] = v
		}
	}
	if r.Drift != nil {
		c.Drift = make(map[string]int, len(r.Drift))
		for k, v := range r.Drift {
			c.Drift[k] = v
		}
	}
	return &c
}

// UsesServiceAccount reports whether the watcher watches the account with
// its own credentials: asked for, or no credentials given at all (an
// account added by name only, as in the Dynamic Accounts examples, is
// watched by the agent that takes it, as in Armory's Agent mode).
func (s Spec) UsesServiceAccount() bool {
	return s.ServiceAccount || s.KubeconfigFile == "" && len(s.KubeconfigSealed) == 0
}

// ProtoSpec is the spec as the lease carries it.
func (r *Record) ProtoSpec() *accountsv1.AccountSpec {
	return &accountsv1.AccountSpec{
		Name:             r.Name,
		KubeconfigFile:   r.Spec.KubeconfigFile,
		KubeconfigSealed: r.Spec.KubeconfigSealed,
		ServiceAccount:   r.Spec.UsesServiceAccount(),
		Context:          r.Spec.Context,
		Namespaces:       r.Spec.Namespaces,
		Kinds:            r.Spec.Kinds,
		OmitKinds:        r.Spec.OmitKinds,
	}
}

// Holders are the zones that may hold the current generation's lease: the
// account's zone, or every zone it was offered to.
func (r *Record) Holders() []Holder {
	if r.ZoneID != "" {
		return []Holder{{Zone: r.ZoneID, Generation: r.Generation}}
	}
	out := make([]Holder, 0, len(r.Offered))
	for _, z := range r.Offered {
		out = append(out, Holder{Zone: z, Generation: r.Generation})
	}
	return out
}

// setState moves r to s at now for reason, and records the transition.
func (r *Record) setState(s State, now time.Time, reason string) {
	if r.State != s {
		t := Transition{From: r.State, To: s, At: now, Reason: reason}
		if s == Failed || s == Orphaned {
			t.Error = r.ErrorMessage
		}
		r.record(t)
		r.StateSince = now
	}
	r.State = s
	r.UpdatedAt = now
}
