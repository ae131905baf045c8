package watch

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// LastAppliedAnnotation is kubectl apply's copy of the last manifest: for
// a Secret it holds every value in clear, so it never leaves the cluster.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

var secrets = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Scrubber is the informer transform of one resource: it runs before an
// object is cached, so nothing the watcher holds, and nothing it
// publishes, ever contains a Secret value, the last-applied annotation or
// managedFields. It is idempotent, as informers require.
func Scrubber(gvr schema.GroupVersionResource) cache.TransformFunc {
	isSecret := gvr == secrets
	return func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		Scrub(u, isSecret)
		return u, nil
	}
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
