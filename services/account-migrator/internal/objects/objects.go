// Package objects reads an account's inventory back from the compacted
// watch stream: the stream holds the last state of every object, so it is
// the inventory itself and no second database is kept.
package objects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/queue"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

// ErrUnknownKind is returned for a kind the account's watcher does not
// stream; the message lists those it does.
var ErrUnknownKind = errors.New("unknown kind")

// ErrNotFound is returned by Get for an object the stream does not hold
// (or holds only as a tombstone).
var ErrNotFound = errors.New("object not found")

// ErrClusterScoped is returned when a namespace is asked of a
// cluster-scoped kind.
var ErrClusterScoped = errors.New("kind is cluster-scoped")

// Stream reads the watch stream: its history and the last message of a
// subject.
type Stream interface {
	queue.Reader
	queue.LastReader
}

// Item is one object as the API returns it.
type Item struct {
	APIVersion      string          `json:"apiVersion"`
	Kind            string          `json:"kind"`
	Namespace       string          `json:"namespace,omitempty"`
	Name            string          `json:"name"`
	UID             string          `json:"uid,omitempty"`
	ResourceVersion string          `json:"resourceVersion,omitempty"`
	Object          json.RawMessage `json:"object,omitempty"`
}

// Reader reads inventories.
type Reader struct {
	stream   Stream
	subjects queue.Subjects
	log      *slog.Logger
}

// NewReader returns a reader over stream.
func NewReader(stream Stream, subjects queue.Subjects, log *slog.Logger) *Reader {
	return &Reader{stream: stream, subjects: subjects, log: log}
}

// ResolveKind finds the watched kind q names: its token as written
// ("configmaps", "deployments.apps") or as escaped in subjects
// ("deployments%2Eapps"), its Kind ("ConfigMap", any case) or its plural
// resource ("deployments").
func ResolveKind(kinds []accounts.Kind, q string) (accounts.Kind, error) {
	for _, match := range []func(k accounts.Kind) bool{
		func(k accounts.Kind) bool { return k.Token == q || strings.EqualFold(readable(k), q) },
		func(k accounts.Kind) bool { return strings.EqualFold(k.Kind, q) },
		func(k accounts.Kind) bool { return strings.EqualFold(k.Resource, q) },
	} {
		if i := slices.IndexFunc(kinds, match); i >= 0 {
			return kinds[i], nil
		}
	}
	known := make([]string, 0, len(kinds))
	for _, k := range kinds {
		known = append(known, readable(k))
	}
	slices.Sort(known)
	if len(known) == 0 {
		return accounts.Kind{}, fmt.Errorf("%w %q: the account has no watched kinds (it has not been activated yet)", ErrUnknownKind, q)
	}
	return accounts.Kind{}, fmt.Errorf("%w %q: known kinds are %s", ErrUnknownKind, q, strings.Join(known, ", "))
}

// readable is a kind's token before escaping: "resource" or
// "resource.group".
func readable(k accounts.Kind) string {
	if k.Group == "" {
		return k.Resource
	}
	return k.Resource + "." + k.Group
}

// List returns the live objects of an account, narrowed to kind (nil for
// all) and namespace ("" for all), without tombstones.
func (r *Reader) List(ctx context.Context, tenant, account string, kind *accounts.Kind, namespace string) ([]Item, error) {
	token, clusterScoped := "", false
	if kind != nil {
		token = kind.Token
		if !kind.Namespaced {
			if namespace != "" {
				return nil, fmt.Errorf("%w: %s has no namespace", ErrClusterScoped, kind.Kind)
			}
			clusterScoped = true
		}
	}
	items := []Item{}
	err := r.stream.Read(ctx, inventory.Filter(r.subjects, tenant, account, token, namespace, clusterScoped), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		if m.Header[inventory.HeaderDeleted] == "true" {
			return true
		}
		if it, ok := r.item(m); ok {
			items = append(items, it)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("read inventory of %q: %w", account, err)
	}
	return items, nil
}

// Get returns one live object.
func (r *Reader) Get(ctx context.Context, tenant, account string, kind accounts.Kind, namespace, name string) (*Item, error) {
	if !kind.Namespaced {
		namespace = ""
	}
	m, err := r.stream.Last(ctx, inventory.ObjectSubject(r.subjects, tenant, account, kind.Token, namespace, name))
	if errors.Is(err, queue.ErrNoMessage) {
		return nil, fmt.Errorf("%w: %s %s/%s", ErrNotFound, kind.Kind, namespace, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read object: %w", err)
	}
	it, ok := r.item(m)
	if !ok || m.Header[inventory.HeaderDeleted] == "true" {
		return nil, fmt.Errorf("%w: %s %s/%s", ErrNotFound, kind.Kind, namespace, name)
	}
	return &it, nil
}

func (r *Reader) item(m queue.StreamMessage) (Item, bool) {
	d, err := events.DecodeAs[*watchv1.ObjectDelta](m.Header, m.Data)
	if err != nil {
		r.log.Warn("undecodable inventory message skipped", "subject", m.Subject, "error", err)
		return Item{}, false
	}
	apiVersion := d.GetVersion()
	if d.GetGroup() != "" {
		apiVersion = d.GetGroup() + "/" + d.GetVersion()
	}
	it := Item{
		APIVersion: apiVersion, Kind: d.GetKind(), Namespace: d.GetNamespace(), Name: d.GetName(),
		UID: d.GetUid(), ResourceVersion: d.GetResourceVersion(),
	}
	if json.Valid(d.GetObject()) {
		it.Object = d.GetObject()
	}
	return it, true
}
