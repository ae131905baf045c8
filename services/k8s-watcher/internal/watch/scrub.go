package watch

import (
	"encoding/json"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// LastAppliedAnnotation is kubectl apply's copy of the last manifest: for
// a Secret it holds every value in clear, so it never leaves the cluster.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

var secrets = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Scrubber is the informer transform of one resource: it runs before an
// object is cached, so nothing the watcher holds, and nothing it
// publishes, ever contains a Secret value, the last-applied annotation or
// managedFields. It turns the scrubbed object into its compact cached
// form: the JSON every delta of it carries, encoded once, and the four
// fields the watcher reads. An unstructured object's maps cost several
// times its JSON, and the watcher never reads another field, so the
// informers hold only the compact form. It is idempotent, as informers
// require.
func Scrubber(gvr schema.GroupVersionResource) cache.TransformFunc {
	isSecret := gvr == secrets
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil // already compact, or not an object
		}
		Scrub(u, isSecret)
		c, err := compact(u)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", gvr.Resource, err)
		}
		return c, nil
	}
}

// cached is what the informers hold of one object.
type cached struct {
	// meta has the namespace, name, uid and resourceVersion only: what
	// the informers' keys and indexes, and the watcher, read.
	meta metav1.ObjectMeta
	// raw is the scrubbed object as JSON, the delta's Object.
	raw []byte
}

// GetObjectMeta makes cached an object to client-go's key functions.
func (c *cached) GetObjectMeta() metav1.Object { return &c.meta }

// compact encodes a scrubbed object. The identity fields are copied so
// that the cached form holds no part of the decoded list.
func compact(u *unstructured.Unstructured) (*cached, error) {
	raw, err := json.Marshal(u.Object)
	if err != nil {
		return nil, fmt.Errorf("encode %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &cached{
		meta: metav1.ObjectMeta{
			Namespace:       strings.Clone(u.GetNamespace()),
			Name:            strings.Clone(u.GetName()),
			UID:             types.UID(strings.Clone(string(u.GetUID()))),
			ResourceVersion: strings.Clone(u.GetResourceVersion()),
		},
		raw: raw,
	}, nil
}

// Scrub removes in place what must not leave the cluster. With secret
// set, stringData goes and every data value becomes "" (the keys stay, so
// the inventory shows what a Secret holds, never a byte of a value).
func Scrub(u *unstructured.Unstructured, secret bool) {
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	if ann := u.GetAnnotations(); ann != nil {
		if _, ok := ann[LastAppliedAnnotation]; ok {
			delete(ann, LastAppliedAnnotation)
			if len(ann) == 0 {
				ann = nil
			}
			u.SetAnnotations(ann)
		}
	}
	if !secret {
		return
	}
	delete(u.Object, "stringData")
	if data, ok := u.Object["data"].(map[string]any); ok {
		for k := range data {
			data[k] = ""
		}
	}
}
