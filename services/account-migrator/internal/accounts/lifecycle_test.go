package accounts

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/seal"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// view is a fixed presence view.
type view struct {
	live map[string]bool
	held map[string]string // "zone/account/gen" -> watcher
}

func (v view) ZoneLive(z string) bool { return v.live[z] }
func (v view) LiveZones() []string {
	var out []string
	for _, z := range []string{"a", "b", "c"} {
		if v.live[z] {
			out = append(out, z)
		}
	}
	return out
}
func (v view) Holder(zone, account string, gen uint64) (string, bool) {
	w, ok := v.held[zone+"/"+account+"/"+string(rune('0'+gen))]
	return w, ok
}

var policy = Policy{MaxRetries: 3, RetryFrequency: 5 * time.Second, ActivationTimeout: time.Minute, DeactivateTimeout: 30 * time.Second}

func rec(state State, mod ...func(*Record)) *Record {
	r := &Record{Name: "acc", State: state, ZoneID: "a", Generation: 1, StateSince: t0}
	for _, m := range mod {
		m(r)
	}
	return r
}

func TestTick(t *testing.T) {
	liveA := view{live: map[string]bool{"a": true}}
	tests := []struct {
		name      string
		r         *Record
		view      view
		at        time.Duration
		want      State
		leases    []Lease
		deactive  int
		unchanged bool
	}{
		{name: "to migrate: lease to the zone", r: rec(ToMigrate), view: liveA, want: Activating, leases: []Lease{{Zone: "a"}}},
		{name: "to migrate: zone without watchers still gets its lease", r: rec(ToMigrate), view: view{}, want: Activating, leases: []Lease{{Zone: "a"}}},
		{name: "to migrate: offer to live zones", r: rec(ToMigrate, func(r *Record) { r.ZoneID = "" }), view: view{live: map[string]bool{"a": true, "c": true}}, want: Activating, leases: []Lease{{Zone: "a", Offer: true}, {Zone: "c", Offer: true}}},
		{name: "to migrate: no zone and nobody connected", r: rec(ToMigrate, func(r *Record) { r.ZoneID = "" }), view: view{}, want: Failed},
		{name: "to migrate: releases the previous holder", r: rec(ToMigrate, func(r *Record) { r.Release = []Holder{{Zone: "b", Generation: 1}} }), view: liveA, want: Activating, leases: []Lease{{Zone: "a"}}, deactive: 1},
		{name: "activating: waits", r: rec(Activating), view: liveA, at: 30 * time.Second, unchanged: true},
		{name: "activating: times out", r: rec(Activating), view: liveA, at: 61 * time.Second, want: Failed, deactive: 1},
		{name: "activating: zone dead", r: rec(Activating), view: view{}, want: Orphaned},
		{name: "active: zone live", r: rec(Active), view: liveA, unchanged: true},
		{name: "active: zone dead", r: rec(Active), view: view{live: map[string]bool{"b": true}}, want: Orphaned},
		{name: "orphaned: a live watcher holds it", r: rec(Orphaned), view: view{live: map[string]bool{"a": true}, held: map[string]string{"a/acc/1": "w9"}}, want: Active},
		{name: "orphaned: nobody holds it", r: rec(Orphaned), view: liveA, unchanged: true},
		{name: "failed: before retry_frequency", r: rec(Failed, func(r *Record) { r.FailedCount = 1 }), view: liveA, at: 4 * time.Second, unchanged: true},
		{name: "failed: retried", r: rec(Failed, func(r *Record) { r.FailedCount = 3 }), view: liveA, at: 5 * time.Second, want: ToMigrate},
		{name: "failed: out of retries", r: rec(Failed, func(r *Record) { r.FailedCount = 4 }), view: liveA, at: time.Hour, unchanged: true},
		{name: "to deactivate: deactivate sent", r: rec(ToDeactivate), view: liveA, want: Deactivating, deactive: 1},
		{name: "to deactivate: nothing to tell", r: rec(ToDeactivate, func(r *Record) { r.ZoneID = "" }), view: liveA, want: Inactive},
		{name: "deactivating: waits for RELEASED", r: rec(Deactivating), view: liveA, at: 10 * time.Second, unchanged: true},
		{name: "deactivating: still held after the timeout", r: rec(Deactivating), view: view{live: map[string]bool{"a": true}, held: map[string]string{"a/acc/1": "w1"}}, at: 31 * time.Second, want: Deactivating, deactive: 1},
		{name: "deactivating: nobody holds it after the timeout", r: rec(Deactivating), view: liveA, at: 31 * time.Second, want: Inactive},
		{name: "inactive: nothing", r: rec(Inactive), view: liveA, unchanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := *tt.r
			n, eff, changed := Tick(tt.r, t0.Add(tt.at), tt.view, policy)
			require.Equal(t, before.State, tt.r.State, "the input record is not changed")
			require.Equal(t, !tt.unchanged, changed)
			if tt.unchanged {
				return
			}
			require.Equal(t, tt.want, n.State)
			require.Equal(t, tt.leases, eff.Leases)
			require.Len(t, eff.Deactivate, tt.deactive)
			if len(tt.leases) > 0 {
				require.Equal(t, tt.r.Generation+1, n.Generation, "every migration is a new generation")
			}
			if n.State == Inactive {
				require.True(t, n.PurgePending, "an INACTIVE account's inventory is purged")
			}
		})
	}
}

func TestRequests(t *testing.T) {
	tests := []struct {
		name    string
		r       *Record
		op      func(r *Record) error
		want    State
		illegal bool
	}{
		{"migrate inactive", rec(Inactive), func(r *Record) error { return r.Migrate(t0, false) }, ToMigrate, false},
		{"migrate failed resets failedCount", rec(Failed, func(r *Record) { r.FailedCount = 4 }), func(r *Record) error { return r.Migrate(t0, false) }, ToMigrate, false},
		{"migrate orphaned", rec(Orphaned), func(r *Record) error { return r.Migrate(t0, false) }, ToMigrate, false},
		{"migrate active: no change", rec(Active), func(r *Record) error { return r.Migrate(t0, false) }, Active, false},
		{"migrate active with a new spec", rec(Active), func(r *Record) error { return r.Migrate(t0, true) }, ToMigrate, false},
		{"migrate deactivating", rec(Deactivating), func(r *Record) error { return r.Migrate(t0, false) }, Deactivating, true},
		{"migrate to deactivate", rec(ToDeactivate), func(r *Record) error { return r.Migrate(t0, false) }, ToDeactivate, true},
		{"migrate while deleting", rec(Active, func(r *Record) { r.Deleting = true }), func(r *Record) error { return r.Migrate(t0, true) }, Active, true},
		{"deactivate active", rec(Active), func(r *Record) error { return r.Deactivate(t0) }, ToDeactivate, false},
		{"deactivate activating", rec(Activating), func(r *Record) error { return r.Deactivate(t0) }, ToDeactivate, false},
		{"deactivate failed", rec(Failed), func(r *Record) error { return r.Deactivate(t0) }, Inactive, false},
		{"deactivate to migrate", rec(ToMigrate), func(r *Record) error { return r.Deactivate(t0) }, Inactive, false},
		{"deactivate a re-migration not yet leased", rec(ToMigrate, func(r *Record) { r.Release = []Holder{{Zone: "a", Generation: 1}} }), func(r *Record) error { return r.Deactivate(t0) }, ToDeactivate, false},
		{"deactivate deactivating", rec(Deactivating), func(r *Record) error { return r.Deactivate(t0) }, Deactivating, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op(tt.r)
			if tt.illegal {
				require.ErrorIs(t, err, ErrIllegalTransition)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.want, tt.r.State)
		})
	}
	r := rec(Active)
	require.NoError(t, r.Migrate(t0, true))
	require.Equal(t, []Holder{{Zone: "a", Generation: 1}}, r.Release, "a re-migrated account's holder is released")
}

func TestApplyStatus(t *testing.T) {
	offered := func(r *Record) { r.ZoneID, r.Offered = "", []string{"a", "b"} }
	tests := []struct {
		name     string
		r        *Record
		st       Status
		want     State
		zone     string
		deactive []Holder
		same     bool
	}{
		{"activated", rec(Activating), Status{Type: StatusActivated, Generation: 1, Zone: "a"}, Active, "a", nil, false},
		{"activated: stale generation", rec(Activating, func(r *Record) { r.Generation = 2 }), Status{Type: StatusActivated, Generation: 1, Zone: "a"}, Activating, "a", []Holder{{Zone: "a", Generation: 1}}, true},
		{"activated: offer won", rec(Activating, offered), Status{Type: StatusActivated, Generation: 1, Zone: "b"}, Active, "b", nil, false},
		{"activated: offer lost", rec(Active, func(r *Record) { r.ZoneID = "b" }), Status{Type: StatusActivated, Generation: 1, Zone: "a"}, Active, "b", []Holder{{Zone: "a", Generation: 1}}, true},
		{"activated: orphan recovered", rec(Orphaned), Status{Type: StatusActivated, Generation: 1, Zone: "a", Watcher: "w2"}, Active, "a", nil, false},
		{"activated: while deactivating", rec(Deactivating), Status{Type: StatusActivated, Generation: 1, Zone: "a"}, Deactivating, "a", []Holder{{Zone: "a", Generation: 1}}, true},
		{"failed", rec(Activating), Status{Type: StatusFailed, Generation: 1, Zone: "a", Error: "x"}, Failed, "a", nil, false},
		{"failed: holder lost the cluster", rec(Active), Status{Type: StatusFailed, Generation: 1, Zone: "a", Error: "x"}, Failed, "a", nil, false},
		{"failed: one offered zone of two", rec(Activating, offered), Status{Type: StatusFailed, Generation: 1, Zone: "a", Error: "x"}, Activating, "", nil, false},
		{"failed: from another zone", rec(Active), Status{Type: StatusFailed, Generation: 1, Zone: "b", Error: "x"}, Active, "a", nil, true},
		{"released", rec(Deactivating), Status{Type: StatusReleased, Generation: 1, Zone: "a"}, Inactive, "a", nil, false},
		{"released: not deactivating", rec(Active), Status{Type: StatusReleased, Generation: 1, Zone: "a"}, Active, "a", nil, true},
		{"released: stale", rec(Deactivating, func(r *Record) { r.Generation = 3 }), Status{Type: StatusReleased, Generation: 1, Zone: "a"}, Deactivating, "a", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, eff, changed := ApplyStatus(tt.r, tt.st, t0)
			require.Equal(t, !tt.same, changed)
			require.Equal(t, tt.want, n.State)
			require.Equal(t, tt.zone, n.ZoneID)
			require.Equal(t, tt.deactive, eff.Deactivate)
		})
	}
}

func TestValidateKubeconfigFile(t *testing.T) {
	for ref, ok := range map[string]bool{
		"encryptedFile:k8s!n:kubeconfig!k:config!ns:spinnaker": true,
		"encryptedFile:k8s!n:kubeconfig!k:config":              false,
		"/etc/kube/config":               true,
		"file:/etc/kube/config":          true,
		"encryptedFile:s3!b:bucket":      false,
		"encryptedFile:k8s!n:kubeconfig": false,
		"encryptedFile:k8s!n:a!k:b!x:c":  false,
		"encryptedFile:k8s!n:a!n:b!k:c":  false,
		"  ":                             false,
	} {
		t.Run(ref, func(t *testing.T) {
			err := ValidateKubeconfigFile(ref)
			if ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrInvalid)
			}
		})
	}
}

func TestSealer(t *testing.T) {
	keys, err := seal.NewKeyring([]seal.Key{{ID: "k1", Secret: make([]byte, 32)}}, nil)
	require.NoError(t, err)
	s := NewSealer(keys).ForTenant("acme")
	sealed, err := s.Seal([]byte("plain"))
	require.NoError(t, err)
	id, ok := seal.KeyID(sealed)
	require.True(t, ok)
	require.Equal(t, "k1", id)
	plain, err := s.Open(sealed)
	require.NoError(t, err)
	require.Equal(t, "plain", string(plain))
	_, err = NewSealer(keys).ForTenant("globex").Open(sealed)
	require.ErrorIs(t, err, seal.ErrOpen, "another tenant's key does not open it")
	_, err = NewSealer(nil).Seal([]byte("plain"))
	require.ErrorIs(t, err, ErrNoKey)
}
