// Package ops makes the changes the control plane asks for in an account's
// cluster: server-side apply of manifests, delete and scale. Every failure
// becomes an OperationResult carrying the Kubernetes error verbatim; a bad
// manifest never takes the watcher down.
package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

// DefaultFieldManager owns the fields of an Apply that names none.
const DefaultFieldManager = "outpost"

// ErrBadOperation is an operation that cannot be carried out as written:
// no command, an unparsable manifest, an object without a name.
var ErrBadOperation = errors.New("bad operation")

// Executor runs operations against one cluster.
type Executor struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

// NewExecutor maps kinds to resources with the cluster's discovery,
// refreshed when a kind is unknown (a CRD created since).
func NewExecutor(dyn dynamic.Interface, disco discovery.DiscoveryInterface) *Executor {
	return &Executor{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))}
}

// Kind names the operation's command for metrics: "apply", "delete",
// "scale" or "unknown".
func Kind(op *watchv1.Operation) string {
	switch op.GetKind().(type) {
	case *watchv1.Operation_Apply:
		return "apply"
	case *watchv1.Operation_Delete:
		return "delete"
	case *watchv1.Operation_Scale:
		return "scale"
	}
	return "unknown"
}

// Do runs op and reports how it went. The result's id and account are op's.
func (e *Executor) Do(ctx context.Context, op *watchv1.Operation) *watchv1.OperationResult {
	res := &watchv1.OperationResult{Id: op.GetId(), Account: op.GetAccount()}
	var err error
	switch c := op.GetKind().(type) {
	case *watchv1.Operation_Apply:
		res.Objects, err = e.apply(ctx, c.Apply)
	case *watchv1.Operation_Delete:
		var r *watchv1.ObjectResult
		if r, err = e.delete(ctx, c.Delete.GetObject()); r != nil {
			res.Objects = append(res.Objects, r)
		}
	case *watchv1.Operation_Scale:
		var r *watchv1.ObjectResult
		if r, err = e.scale(ctx, c.Scale.GetObject(), c.Scale.GetReplicas()); r != nil {
			res.Objects = append(res.Objects, r)
		}
	default:
		err = fmt.Errorf("%w: no command", ErrBadOperation)
	}
	res.Ok = err == nil
	if err != nil {
		res.Error = err.Error()
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			res.Code = status.Status().Code
			res.Reason = string(status.Status().Reason)
		}
	}
	return res
}

// mapping resolves a kind, refreshing discovery once when it is unknown.
func (e *Executor) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		e.mapper.Reset()
		m, err = e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: kind %s: %w", ErrBadOperation, gvk, err)
	}
	return m, nil
}

// resource is the client of ref's kind, in its namespace for a
// namespaced kind (defaultNS when it names none).
func (e *Executor) resource(gvk schema.GroupVersionKind, namespace, defaultNS string) (dynamic.ResourceInterface, string, error) {
	m, err := e.mapping(gvk)
	if err != nil {
		return nil, "", err
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return e.dyn.Resource(m.Resource), "", nil
	}
	if namespace == "" {
		namespace = defaultNS
	}
	if namespace == "" {
		namespace = metav1.NamespaceDefault
	}
	return e.dyn.Resource(m.Resource).Namespace(namespace), namespace, nil
}

// Documents splits YAML or JSON manifests, several documents and List
// kinds included, into objects.
func Documents(manifests []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%w: manifest document %d: %w", ErrBadOperation, i, err)
		}
		if len(doc) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: doc}
		if u.IsList() {
			n := 0
			err := u.EachListItem(func(o runtime.Object) error {
				n++
				item, ok := o.(*unstructured.Unstructured)
				if !ok {
					return fmt.Errorf("item %d is not an object", n)
				}
				if err := named(item); err != nil {
					return fmt.Errorf("item %d: %w", n, err)
				}
				out = append(out, item)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("%w: manifest document %d: %w", ErrBadOperation, i, err)
			}
			continue
		}
		if err := named(u); err != nil {
			return nil, fmt.Errorf("%w: manifest document %d: %w", ErrBadOperation, i, err)
		}
		out = append(out, u)
	}
}

// errUnnamed is an object without what apply needs to address it; the
// items of a List are held to it as much as single documents.
var errUnnamed = errors.New("apiVersion, kind and metadata.name are required")

func named(u *unstructured.Unstructured) error {
	if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
		return errUnnamed
	}
	return nil
}

func (e *Executor) apply(ctx context.Context, a *watchv1.Apply) ([]*watchv1.ObjectResult, error) {
	docs, err := Documents(a.GetManifests())
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%w: no object in the manifests", ErrBadOperation)
	}
	manager := a.GetFieldManager()
	if manager == "" {
		manager = DefaultFieldManager
	}
	force := a.GetForce()
	var results []*watchv1.ObjectResult
	for _, u := range docs {
		ri, ns, err := e.resource(u.GroupVersionKind(), u.GetNamespace(), a.GetNamespace())
		if err != nil {
			return results, err
		}
		if ns != "" {
			u.SetNamespace(ns)
		}
		ref := &watchv1.ObjectRef{ApiVersion: u.GetAPIVersion(), Kind: u.GetKind(), Namespace: ns, Name: u.GetName()}
		before := ""
		switch cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{}); {
		case err == nil:
			before = cur.GetResourceVersion()
		case !apierrors.IsNotFound(err):
			return results, err
		}
		body, err := json.Marshal(u.Object)
		if err != nil {
			return results, fmt.Errorf("%w: %s %s: %w", ErrBadOperation, u.GetKind(), u.GetName(), err)
		}
		out, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: manager, Force: &force})
		if err != nil {
			return results, err
		}
		action := "configured"
		switch before {
		case "":
			action = "created"
		case out.GetResourceVersion():
			action = "unchanged"
		}
		results = append(results, &watchv1.ObjectResult{Object: ref, ResourceVersion: out.GetResourceVersion(), Action: action})
	}
	return results, nil
}

func gvkOf(ref *watchv1.ObjectRef) (schema.GroupVersionKind, error) {
	gv, err := schema.ParseGroupVersion(ref.GetApiVersion())
	if err != nil || ref.GetKind() == "" || ref.GetName() == "" {
		return schema.GroupVersionKind{}, fmt.Errorf("%w: object %q %q %q: apiVersion, kind and name are required", ErrBadOperation, ref.GetApiVersion(), ref.GetKind(), ref.GetName())
	}
	return gv.WithKind(ref.GetKind()), nil
}

func (e *Executor) delete(ctx context.Context, ref *watchv1.ObjectRef) (*watchv1.ObjectResult, error) {
	gvk, err := gvkOf(ref)
	if err != nil {
		return nil, err
	}
	ri, ns, err := e.resource(gvk, ref.GetNamespace(), "")
	if err != nil {
		return nil, err
	}
	if err := ri.Delete(ctx, ref.GetName(), metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	return &watchv1.ObjectResult{
		Object: &watchv1.ObjectRef{ApiVersion: ref.GetApiVersion(), Kind: ref.GetKind(), Namespace: ns, Name: ref.GetName()},
		Action: "deleted",
	}, nil
}

func (e *Executor) scale(ctx context.Context, ref *watchv1.ObjectRef, replicas int32) (*watchv1.ObjectResult, error) {
	gvk, err := gvkOf(ref)
	if err != nil {
		return nil, err
	}
	ri, ns, err := e.resource(gvk, ref.GetNamespace(), "")
	if err != nil {
		return nil, err
	}
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	out, err := ri.Patch(ctx, ref.GetName(), types.MergePatchType, patch, metav1.PatchOptions{}, "scale")
	if err != nil {
		return nil, err
	}
	return &watchv1.ObjectResult{
		Object:          &watchv1.ObjectRef{ApiVersion: ref.GetApiVersion(), Kind: ref.GetKind(), Namespace: ns, Name: ref.GetName()},
		ResourceVersion: out.GetResourceVersion(),
		Action:          "scaled",
	}, nil
}
