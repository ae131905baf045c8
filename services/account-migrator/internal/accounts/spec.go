package accounts

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/queue"
)

// ErrInvalid is returned for an account entry that cannot be stored; the
// message names the field.
var ErrInvalid = errors.New("invalid account")

// Input is one entry of a POST or PATCH body. Pointers tell a field that
// was sent from one that was not, so that PATCH changes only what it names.
type Input struct {
	Name               string    `json:"name"`
	State              *string   `json:"state,omitempty"`
	ZoneID             *string   `json:"zoneId,omitempty"`
	KubeconfigFile     *string   `json:"kubeconfigFile,omitempty"`
	KubeconfigContents *string   `json:"kubeconfigContents,omitempty"`
	ServiceAccount     *bool     `json:"serviceAccount,omitempty"`
	Context            *string   `json:"context,omitempty"`
	Namespaces         *[]string `json:"namespaces,omitempty"`
	Kinds              *[]string `json:"kinds,omitempty"`
	OmitKinds          *[]string `json:"omitKinds,omitempty"`
	// Permissions restrict who may read and operate the account; they
	// are not part of what the watcher watches (no re-migration).
	Permissions *Permissions `json:"permissions,omitempty"`
	// IgnoredFields are the Spinnaker definition fields a credentials
	// request sent that Outpost does not use (not settable as JSON).
	IgnoredFields *[]string `json:"-"`
}

// ValidateName checks that name can be a subject token: the account's
// name is part of its ops, watch and checksum subjects.
func ValidateName(name string) error {
	if !queue.ValidToken(name) {
		return fmt.Errorf("%w: name %q: want 1-64 characters of [a-zA-Z0-9_-]", ErrInvalid, name)
	}
	return nil
}

// encryptedFilePrefix starts a reference to a kubeconfig in a Secret of the
// watcher's cluster.
const encryptedFilePrefix = "encryptedFile:"

// ValidateKubeconfigFile checks a kubeconfigFile reference. The migrator
// never resolves it (the watcher does, inside the customer network), but a
// malformed encryptedFile reference is refused here rather than failing
// on every activation.
func ValidateKubeconfigFile(ref string) error {
	rest, ok := strings.CutPrefix(ref, encryptedFilePrefix)
	if !ok {
		if strings.TrimSpace(ref) == "" {
			return fmt.Errorf("%w: kubeconfigFile is empty", ErrInvalid)
		}
		return nil
	}
	parts := strings.Split(rest, "!")
	if parts[0] != "k8s" {
		return fmt.Errorf("%w: kubeconfigFile %q: only the k8s engine is supported (encryptedFile:k8s!n:<secret>!k:<key>!ns:<namespace>)", ErrInvalid, ref)
	}
	seen := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, ":")
		if !ok || v == "" || !slices.Contains([]string{"n", "k", "ns"}, k) {
			return fmt.Errorf("%w: kubeconfigFile %q: bad parameter %q: want n:<secret>, k:<key> or ns:<namespace>", ErrInvalid, ref, p)
		}
		if _, dup := seen[k]; dup {
			return fmt.Errorf("%w: kubeconfigFile %q: parameter %q given twice", ErrInvalid, ref, k)
		}
		seen[k] = v
	}
	// The watcher reads the Secret from the namespace named here and has
	// no default: a reference without ns would fail every activation.
	if seen["n"] == "" || seen["k"] == "" || seen["ns"] == "" {
		return fmt.Errorf("%w: kubeconfigFile %q: n:<secret>, k:<key> and ns:<namespace> are required", ErrInvalid, ref)
	}
	return nil
}

// SecretRef is the kubeconfigFile reference of a key of a Secret.
func SecretRef(secret, key, namespace string) string {
	return encryptedFilePrefix + "k8s!n:" + secret + "!k:" + key + "!ns:" + namespace
}

// New builds the record of a POSTed entry: INACTIVE, or TO_MIGRATE when its
// state is ACTIVE.
func New(in Input, sealer *Sealer, source string, now time.Time) (*Record, error) {
	if err := ValidateName(in.Name); err != nil {
		return nil, err
	}
	r := &Record{Name: in.Name, State: Inactive, Source: source, CreatedAt: now, UpdatedAt: now, StateSince: now}
	if _, err := in.applySpec(r, sealer); err != nil {
		return nil, err
	}
	want, err := in.targetState()
	if err != nil {
		return nil, err
	}
	if want == Active {
		r.setState(ToMigrate, now, "created active")
	}
	return r, nil
}

// Patch applies a PATCH entry to r: spec fields first, then the state.
// A spec change of an account that is (being) watched re-migrates it.
func Patch(r *Record, in Input, sealer *Sealer, now time.Time) error {
	want, err := in.targetState()
	if err != nil {
		return err
	}
	changed, err := in.applySpec(r, sealer)
	if err != nil {
		return err
	}
	if changed {
		r.UpdatedAt = now
	}
	switch want {
	case Active:
		return r.Migrate(now, changed)
	case Inactive:
		return r.Deactivate(now)
	}
	if changed {
		switch r.State {
		case Active, Activating, Orphaned:
			return r.Migrate(now, true)
		}
	}
	return nil
}

func (in Input) targetState() (State, error) {
	if in.State == nil {
		return "", nil
	}
	switch s := State(strings.ToUpper(*in.State)); s {
	case Active, Inactive:
		return s, nil
	default:
		return "", fmt.Errorf("%w: state %q: want ACTIVE or INACTIVE", ErrInvalid, *in.State)
	}
}

// applySpec copies the fields in sets into r and reports whether anything
// changed.
func (in Input) applySpec(r *Record, sealer *Sealer) (bool, error) {
	next := r.Spec
	zone := r.ZoneID
	if in.ZoneID != nil {
		if *in.ZoneID != "" && !queue.ValidToken(*in.ZoneID) {
			return false, fmt.Errorf("%w: zoneId %q: want 1-64 characters of [a-zA-Z0-9_-]", ErrInvalid, *in.ZoneID)
		}
		zone = *in.ZoneID
	}
	if in.KubeconfigFile != nil {
		if *in.KubeconfigFile != "" {
			if err := ValidateKubeconfigFile(*in.KubeconfigFile); err != nil {
				return false, err
			}
			next.KubeconfigSealed = nil
		}
		next.KubeconfigFile = *in.KubeconfigFile
	}
	if in.KubeconfigContents != nil {
		if in.KubeconfigFile != nil && *in.KubeconfigFile != "" && *in.KubeconfigContents != "" {
			return false, fmt.Errorf("%w: kubeconfigFile and kubeconfigContents are exclusive", ErrInvalid)
		}
		next.KubeconfigSealed = nil
		if *in.KubeconfigContents != "" {
			sealed, err := sealer.Seal([]byte(*in.KubeconfigContents))
			if err != nil {
				return false, fmt.Errorf("%w: kubeconfigContents: %w", ErrInvalid, err)
			}
			next.KubeconfigSealed = sealed
			next.KubeconfigFile = ""
		}
	}
	if in.ServiceAccount != nil {
		next.ServiceAccount = *in.ServiceAccount
	}
	if in.Context != nil {
		next.Context = *in.Context
	}
	for _, f := range []struct {
		name string
		src  *[]string
		dst  *[]string
	}{{"namespaces", in.Namespaces, &next.Namespaces}, {"kinds", in.Kinds, &next.Kinds}, {"omitKinds", in.OmitKinds, &next.OmitKinds}} {
		if f.src == nil {
			continue
		}
		for i, v := range *f.src {
			if strings.TrimSpace(v) == "" {
				return false, fmt.Errorf("%w: %s[%d] is empty", ErrInvalid, f.name, i)
			}
		}
		*f.dst = slices.Clone(*f.src)
	}
	if next.ServiceAccount && (next.KubeconfigFile != "" || next.KubeconfigSealed != nil) {
		return false, fmt.Errorf("%w: serviceAccount excludes kubeconfigFile and kubeconfigContents", ErrInvalid)
	}
	if err := in.Permissions.validate(); err != nil {
		return false, err
	}
	changed := zone != r.ZoneID || !specEqual(next, r.Spec) || in.KubeconfigContents != nil && *in.KubeconfigContents != ""
	r.Spec, r.ZoneID = next, zone
	if in.Permissions != nil {
		r.Permissions = in.Permissions.clone()
		if !r.Permissions.Restricted() {
			r.Permissions = nil
		}
	}
	if in.IgnoredFields != nil {
		r.IgnoredFields = slices.Clone(*in.IgnoredFields)
	}
	return changed, nil
}

func specEqual(a, b Spec) bool {
	return a.KubeconfigFile == b.KubeconfigFile && string(a.KubeconfigSealed) == string(b.KubeconfigSealed) &&
		a.ServiceAccount == b.ServiceAccount && a.Context == b.Context &&
		slices.Equal(a.Namespaces, b.Namespaces) && slices.Equal(a.Kinds, b.Kinds) && slices.Equal(a.OmitKinds, b.OmitKinds)
}
