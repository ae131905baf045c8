// Package inventory is the shared vocabulary of the watch inventory: how a
// Kubernetes object maps onto its compacted subject
// "<stack>.<tenant>.watch.<account>.<kind>.<namespace>.<name>", the headers
// stored with each ObjectDelta, and the checksum a watcher and the
// account-migrator both compute over one kind to detect drift.
//
// Kubernetes names may hold characters a subject token cannot ('.', and in
// a few kinds ' ', '*', '>'), so every token is escaped with %XX; '%' itself
// never appears in a Kubernetes name, which keeps the escaping reversible.
package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/outposthq/outpost/libs/queue"
)

// Headers stored with every ObjectDelta, so that the migrator can list and
// checksum an inventory without decoding the objects.
const (
	// HeaderResourceVersion is the object's metadata.resourceVersion.
	HeaderResourceVersion = "Outpost-Resource-Version"
	// HeaderDeleted is "true" on a tombstone.
	HeaderDeleted = "Outpost-Deleted"
)

// ClusterScope is the namespace token of cluster-scoped objects. No
// namespace can be named "_" (namespaces are DNS labels).
const ClusterScope = "_"

// ErrInvalidKey is returned by ParseSubject for a subject that is not an
// inventory subject.
var ErrInvalidKey = errors.New("inventory: invalid object subject")

// EscapeToken makes s usable as one subject token: every byte outside
// [A-Za-z0-9-_:@~+=,] is written as %XX.
func EscapeToken(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

// UnescapeToken reverses EscapeToken.
func UnescapeToken(tok string) (string, error) {
	if !strings.Contains(tok, "%") {
		return tok, nil
	}
	b := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		if tok[i] != '%' {
			b = append(b, tok[i])
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("%w: truncated escape in %q", ErrInvalidKey, tok)
		}
		v, err := hex.DecodeString(tok[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("%w: bad escape in %q", ErrInvalidKey, tok)
		}
		b = append(b, v[0])
		i += 2
	}
	return string(b), nil
}

func plain(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_:@~+=,", c) >= 0
}

// KindToken is the subject token of a kind: its plural resource for the
// core group ("configmaps"), "resource.group" otherwise
// ("deployments.apps"), escaped.
func KindToken(group, resource string) string {
	if group == "" {
		return EscapeToken(resource)
	}
	return EscapeToken(resource + "." + group)
}

// NamespaceToken is the token of a namespace, ClusterScope for "".
func NamespaceToken(namespace string) string {
	if namespace == "" {
		return ClusterScope
	}
	return EscapeToken(namespace)
}

// ObjectSubject is the subject holding the last state of one object.
func ObjectSubject(s queue.Subjects, tenant, account, kindToken, namespace, name string) string {
	return s.Watch(tenant, account) + "." + kindToken + "." + NamespaceToken(namespace) + "." + EscapeToken(name)
}

// Filter matches the objects of an account, narrowed to one kind token
// and/or one namespace when they are not empty.
func Filter(s queue.Subjects, tenant, account, kindToken, namespace string, clusterScoped bool) string {
	k, ns := "*", "*"
	if kindToken != "" {
		k = kindToken
	}
	switch {
	case clusterScoped:
		ns = ClusterScope
	case namespace != "":
		ns = NamespaceToken(namespace)
	}
	if k == "*" && ns == "*" {
		return s.Watch(tenant, account) + ".>"
	}
	return s.Watch(tenant, account) + "." + k + "." + ns + ".*"
}

// Key identifies one object of an account.
type Key struct {
	Account   string
	KindToken string
	// Namespace is "" for cluster-scoped objects.
	Namespace string
	Name      string
}

// ParseSubject splits an inventory subject into its key.
func ParseSubject(subject string) (Key, error) {
	p, err := queue.ParseSubject(subject)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	parts := strings.Split(p.Key, ".")
	if p.Role != queue.RoleWatch || len(parts) != 4 {
		return Key{}, fmt.Errorf("%w: %q: want <stack>.<tenant>.watch.<account>.<kind>.<namespace>.<name>", ErrInvalidKey, subject)
	}
	k := Key{Account: parts[0], KindToken: parts[1]}
	if parts[2] != ClusterScope {
		if k.Namespace, err = UnescapeToken(parts[2]); err != nil {
			return Key{}, err
		}
	}
	if k.Name, err = UnescapeToken(parts[3]); err != nil {
		return Key{}, err
	}
	return k, nil
}

// Line is what the checksum covers of one live object.
type Line struct {
	Namespace       string
	Name            string
	ResourceVersion string
}

// Checksum is the hex SHA-256 over the sorted
// "<namespace>/<name>@<resourceVersion>\n" lines of the live objects of one
// kind. Both ends compute it the same way; lines is sorted in place.
func Checksum(lines []Line) string {
	slices.SortFunc(lines, func(a, b Line) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	h := sha256.New()
	for _, l := range lines {
		_, _ = h.Write([]byte(l.Namespace))
		_, _ = h.Write([]byte{'/'})
		_, _ = h.Write([]byte(l.Name))
		_, _ = h.Write([]byte{'@'})
		_, _ = h.Write([]byte(l.ResourceVersion))
		_, _ = h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
