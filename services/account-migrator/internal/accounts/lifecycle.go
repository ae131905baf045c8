package accounts

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// ErrIllegalTransition is returned for a request the account's state does
// not allow, e.g. migrating an account that is being deactivated.
var ErrIllegalTransition = errors.New("illegal state transition")

// Reason given to an ACTIVATING account nobody can take.
const reasonNoWatcher = "no watcher connected"

// Reasons of the transitions recorded in the history.
const (
	reasonDeactivate = "deactivation requested"
	reasonZoneLost   = "zone lost its watcher"
)

// Migrate asks for a migration (POST or PATCH with state ACTIVE): the
// account becomes TO_MIGRATE with its failedCount reset. An account already
// being activated is left alone unless respec says its spec changed; a held
// one is re-migrated only then, and its current holder is released.
func (r *Record) Migrate(now time.Time, respec bool) error {
	if r.Deleting {
		return fmt.Errorf("%w: account %q is being deleted", ErrIllegalTransition, r.Name)
	}
	switch r.State {
	case ToDeactivate, Deactivating:
		return fmt.Errorf("%w: account %q is %s; migrate it once it is INACTIVE", ErrIllegalTransition, r.Name, r.State)
	case ToMigrate:
		r.FailedCount = 0
		return nil
	case Activating, Active:
		if !respec {
			r.FailedCount = 0
			return nil
		}
	}
	if r.State == Activating || r.State == Active || r.State == Orphaned {
		r.Release = append(r.Release, r.Holders()...)
	}
	r.FailedCount = 0
	r.ErrorMessage = ""
	reason := "migration requested"
	if respec {
		reason = "spec changed: re-migrated"
	}
	r.setState(ToMigrate, now, reason)
	return nil
}

// Deactivate asks for the account to stop being watched (PATCH with state
// INACTIVE): accounts nothing holds become INACTIVE at once, the others
// TO_DEACTIVATE.
func (r *Record) Deactivate(now time.Time) error {
	switch r.State {
	case Inactive, ToDeactivate, Deactivating:
		return nil
	case Failed, ToMigrate:
		if len(r.Release) > 0 {
			// A re-migration whose old holder was not told yet: it must
			// be, so deactivate rather than drop the release.
			r.setState(ToDeactivate, now, reasonDeactivate)
			return nil
		}
		r.toInactive(now, reasonDeactivate)
	default:
		r.setState(ToDeactivate, now, reasonDeactivate)
	}
	return nil
}

// MarkDeleted records a DELETE: it reports true when the record can be
// removed at once (nothing holds it), otherwise the account is deactivated
// and removed once INACTIVE.
func (r *Record) MarkDeleted(now time.Time) bool {
	r.Deleting = true
	_ = r.Deactivate(now)
	return r.State == Inactive
}

func (r *Record) toInactive(now time.Time, reason string) {
	r.setState(Inactive, now, reason)
	r.PurgePending = true
	r.Agent = ""
	r.Offered, r.OfferFailures, r.Drift = nil, nil, nil
}

func (r *Record) fail(now time.Time, msg string) {
	r.FailedCount++
	r.ErrorMessage = msg
	r.Agent = ""
	r.setState(Failed, now, "failed")
}

// Policy holds the lifecycle's timings.
type Policy struct {
	MaxRetries        int
	RetryFrequency    time.Duration
	ActivationTimeout time.Duration
	DeactivateTimeout time.Duration
}

// View is what the lifecycle needs to know of the watchers (presence).
type View interface {
	// ZoneLive reports whether the zone has a live watcher.
	ZoneLive(zone string) bool
	// LiveZones lists the zones with a live watcher, sorted.
	LiveZones() []string
	// Holder returns the live watcher of zone whose heartbeats say it holds
	// the account at generation.
	Holder(zone, account string, generation uint64) (string, bool)
}

// Lease is one lease to publish.
type Lease struct {
	Zone  string
	Offer bool
}

// Effects are what must be published once a transition is stored.
type Effects struct {
	Leases     []Lease
	Deactivate []Holder
	// Reason goes with the Deactivate commands.
	Reason string
	// Retry marks an automatic retry of a FAILED account.
	Retry bool
}

// Tick is one reconcile pass over r: it returns the next record, what to
// publish, and whether anything changed.
func Tick(r *Record, now time.Time, view View, p Policy) (*Record, Effects, bool) {
	n := r.Clone()
	var eff Effects
	switch r.State {
	case ToMigrate:
		eff.Deactivate, eff.Reason = n.Release, "re-migrated"
		n.Release = nil
		zones, offer := []string{n.ZoneID}, false
		if n.ZoneID == "" {
			zones, offer = view.LiveZones(), true
		}
		if len(zones) == 0 {
			n.fail(now, reasonNoWatcher)
			return n, eff, true
		}
		n.Generation++
		n.Offered, n.OfferFailures, n.Agent = nil, nil, ""
		if offer {
			n.Offered = zones
		}
		for _, z := range zones {
			eff.Leases = append(eff.Leases, Lease{Zone: z, Offer: offer})
		}
		n.setState(Activating, now, fmt.Sprintf("lease of generation %d sent to %s", n.Generation, strings.Join(zones, ", ")))
		return n, eff, true
	case Activating:
		if n.ZoneID != "" && !view.ZoneLive(n.ZoneID) {
			n.ErrorMessage = "no live watcher in zone " + n.ZoneID
			n.setState(Orphaned, now, reasonZoneLost)
			return n, eff, true
		}
		if now.Sub(n.StateSince) > p.ActivationTimeout {
			eff.Deactivate, eff.Reason = n.Holders(), "activation timed out"
			n.fail(now, fmt.Sprintf("no watcher activated the account within %s", p.ActivationTimeout))
			return n, eff, true
		}
	case Active:
		if !view.ZoneLive(n.ZoneID) {
			n.ErrorMessage = "no live watcher in zone " + n.ZoneID
			n.setState(Orphaned, now, reasonZoneLost)
			return n, eff, true
		}
	case Orphaned:
		if n.ZoneID == "" {
			break
		}
		if w, ok := view.Holder(n.ZoneID, n.Name, n.Generation); ok {
			n.Agent, n.ErrorMessage = w, ""
			n.setState(Active, now, "watcher "+w+" holds it again")
			return n, eff, true
		}
	case Failed:
		if n.FailedCount <= p.MaxRetries && now.Sub(n.StateSince) >= p.RetryFrequency {
			// A holder that lost its cluster may still hold the old
			// generation: it is released with the retry.
			n.Release = n.Holders()
			n.setState(ToMigrate, now, fmt.Sprintf("automatic retry %d of %d", n.FailedCount, p.MaxRetries))
			eff.Retry = true
			return n, eff, true
		}
	case ToDeactivate:
		eff.Deactivate, eff.Reason = append(n.Holders(), n.Release...), "deactivated"
		n.Release = nil
		if len(eff.Deactivate) == 0 {
			n.toInactive(now, "no watcher held it")
			return n, eff, true
		}
		n.setState(Deactivating, now, "deactivation sent to its holders")
		return n, eff, true
	case Deactivating:
		if now.Sub(n.StateSince) <= p.DeactivateTimeout {
			break
		}
		for _, h := range n.Holders() {
			if _, held := view.Holder(h.Zone, n.Name, h.Generation); held {
				// Still held: ask again and wait another timeout.
				eff.Deactivate, eff.Reason = n.Holders(), "deactivated"
				n.StateSince, n.UpdatedAt = now, now
				return n, eff, true
			}
		}
		n.toInactive(now, "deactivation timed out; no watcher holds it")
		return n, eff, true
	}
	return r, eff, false
}

// StatusType is the kind of a watcher's AccountStatus.
type StatusType int

// Status types.
const (
	StatusActivated StatusType = iota + 1
	StatusFailed
	StatusReleased
)

// Status is a watcher's report about an account.
type Status struct {
	Type       StatusType
	Generation uint64
	Zone       string
	Watcher    string
	Error      string
	Cluster    *Cluster
	Kinds      []Kind
	Skipped    []Skipped
}

// ApplyStatus applies a watcher's report to r. Reports of another
// generation change nothing (fencing); an ACTIVATED nobody should hold is
// answered with a Deactivate to its zone, so no watcher keeps a stale
// watch.
func ApplyStatus(r *Record, st Status, now time.Time) (*Record, Effects, bool) {
	n := r.Clone()
	stray := Effects{Deactivate: []Holder{{Zone: st.Zone, Generation: st.Generation}}, Reason: "not the account's holder"}
	if st.Generation != r.Generation {
		if st.Type == StatusActivated {
			stray.Reason = "stale generation"
			return r, stray, false
		}
		return r, Effects{}, false
	}
	fromHolder := r.ZoneID == st.Zone || r.ZoneID == "" && slices.Contains(r.Offered, st.Zone)
	switch st.Type {
	case StatusActivated:
		switch r.State {
		case Activating, Orphaned, Active, Failed:
		default:
			// Inactive, or being deactivated or re-migrated: whoever
			// activated this generation must let go.
			return r, stray, false
		}
		if !fromHolder {
			return r, stray, false
		}
		n.ZoneID = st.Zone
		n.Agent = st.Watcher
		n.FailedCount, n.ErrorMessage = 0, ""
		n.Cluster, n.Kinds, n.Skipped = st.Cluster, st.Kinds, st.Skipped
		n.Offered, n.OfferFailures = nil, nil
		n.setState(Active, now, "activated by watcher "+st.Watcher+" in zone "+st.Zone)
		return n, Effects{}, true
	case StatusFailed:
		if !fromHolder {
			return r, Effects{}, false
		}
		switch r.State {
		case Activating:
			if r.ZoneID == "" {
				if n.OfferFailures == nil {
					n.OfferFailures = map[string]string{}
				}
				n.OfferFailures[st.Zone] = st.Error
				if len(n.OfferFailures) < len(n.Offered) {
					n.UpdatedAt = now
					return n, Effects{}, true
				}
				n.fail(now, offerCauses(n.OfferFailures))
				n.OfferFailures = nil
				return n, Effects{}, true
			}
		case Active, Orphaned:
		default:
			return r, Effects{}, false
		}
		n.fail(now, st.Error)
		return n, Effects{}, true
	case StatusReleased:
		if !fromHolder || r.State != ToDeactivate && r.State != Deactivating {
			return r, Effects{}, false
		}
		n.toInactive(now, "released by watcher "+st.Watcher)
		return n, Effects{}, true
	}
	return r, Effects{}, false
}

func offerCauses(failures map[string]string) string {
	zones := make([]string, 0, len(failures))
	for z := range failures {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	parts := make([]string, 0, len(zones))
	for _, z := range zones {
		parts = append(parts, "zone "+z+": "+failures[z])
	}
	return strings.Join(parts, "; ")
}
