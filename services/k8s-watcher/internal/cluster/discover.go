package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/outposthq/outpost/libs/inventory"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

// probeParallelism bounds the probe lists in flight against one cluster.
const probeParallelism = 8

// Kind is one resource the watcher streams for an account.
type Kind struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
	// Token is the kind's subject token (inventory.KindToken).
	Token string
	// Namespaces to watch it in; [""] means every namespace (or, for a
	// cluster-scoped kind, the cluster).
	Namespaces []string
}

// Name is the kind as accounts name it in kinds and omitKinds: "resource"
// or "resource.group", unescaped.
func (k Kind) Name() string {
	if k.GVR.Group == "" {
		return k.GVR.Resource
	}
	return k.GVR.Resource + "." + k.GVR.Group
}

// Proto is the kind as reported in ACTIVATED.
func (k Kind) Proto() *accountsv1.WatchedKind {
	return &accountsv1.WatchedKind{
		Group: k.GVR.Group, Version: k.GVR.Version, Kind: k.Kind,
		Resource: k.GVR.Resource, Namespaced: k.Namespaced, Token: k.Token,
	}
}

// Selection is what the account asks for: kinds, omitted kinds and
// namespaces, as in its spec.
type Selection struct {
	Kinds, OmitKinds, Namespaces []string
}

// matches reports whether a name from kinds/omitKinds designates k: its
// Kind (any case), its plural resource or "resource.group".
func matches(name string, k Kind) bool {
	return strings.EqualFold(name, k.Kind) || name == k.GVR.Resource ||
		name == k.Name()
}

// Discover lists the preferred version of every resource that supports
// list and watch (no subresources) and applies the selection. Groups the
// server fails to describe (an aggregated API that is down) are left out
// rather than failing the account.
func Discover(disco discovery.DiscoveryInterface, sel Selection) ([]Kind, error) {
	lists, err := disco.ServerPreferredResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil, fmt.Errorf("discover resources: %w", err)
	}
	var kinds []Kind
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				continue
			}
			k := Kind{GVR: gv.WithResource(r.Name), Kind: r.Kind, Namespaced: r.Namespaced, Token: inventory.KindToken(gv.Group, r.Name)}
			if keep(k, sel) {
				k.Namespaces = []string{""}
				if len(sel.Namespaces) > 0 {
					k.Namespaces = slices.Clone(sel.Namespaces)
				}
				kinds = append(kinds, k)
			}
		}
	}
	slices.SortFunc(kinds, func(a, b Kind) int { return strings.Compare(a.Token, b.Token) })
	return kinds, nil
}

func keep(k Kind, sel Selection) bool {
	if len(sel.Namespaces) > 0 && !k.Namespaced {
		return false
	}
	match := func(names []string) bool {
		return slices.ContainsFunc(names, func(n string) bool { return matches(n, k) })
	}
	if len(sel.Kinds) > 0 && !match(sel.Kinds) {
		return false
	}
	return !match(sel.OmitKinds)
}

// Probe lists one item of every kind in every namespace it is to be
// watched in. A kind the credentials may not list (or that answers with
// any other Kubernetes error) is skipped with the reason, in the
// namespaces where it failed; a 401 or a cluster that does not answer
// fails the whole account.
func Probe(ctx context.Context, host string, dyn dynamic.Interface, kinds []Kind) ([]Kind, []*accountsv1.SkippedKind, error) {
	type result struct {
		kind, ns int
		err      error
	}
	var (
		mu      sync.Mutex
		results []result
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(probeParallelism)
	for i, k := range kinds {
		for j, ns := range k.Namespaces {
			g.Go(func() error {
				_, err := dyn.Resource(k.GVR).Namespace(ns).List(gctx, metav1.ListOptions{Limit: 1})
				if err != nil {
					var status apierrors.APIStatus
					if apierrors.IsUnauthorized(err) || !errors.As(err, &status) {
						return Classify(host, err)
					}
				}
				mu.Lock()
				results = append(results, result{kind: i, ns: j, err: err})
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	denied := make(map[[2]int]error, len(results))
	for _, r := range results {
		if r.err != nil {
			denied[[2]int{r.kind, r.ns}] = r.err
		}
	}
	var (
		ok      []Kind
		skipped []*accountsv1.SkippedKind
	)
	for i, k := range kinds {
		var allowed []string
		for j, ns := range k.Namespaces {
			err, bad := denied[[2]int{i, j}]
			if !bad {
				allowed = append(allowed, ns)
				continue
			}
			reason := err.Error()
			if ns != "" {
				reason = "namespace " + ns + ": " + reason
			}
			skipped = append(skipped, &accountsv1.SkippedKind{Kind: k.Name(), Reason: reason})
		}
		if len(allowed) > 0 {
			k.Namespaces = allowed
			ok = append(ok, k)
		}
	}
	return ok, skipped, nil
}
