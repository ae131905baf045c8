package secrets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrMapping is returned (wrapped) for a mapping entry that is not
// NAME=target in the provider's form.
var ErrMapping = errors.New("invalid secret mapping")

// SecretReader is the part of client-go's SecretInterface, for one
// namespace, the Kubernetes provider uses.
type SecretReader interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Secret, error)
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.SecretList, error)
}

// KubeRef is one key of one Secret.
type KubeRef struct {
	Secret, Key string
}

// Kubernetes reads Secrets of one namespace through the API server.
// ${NAME} is, in this order:
//
//   - Mapping[NAME]: key Key of Secret Secret;
//   - key NAME of the first of Secrets (Secret names, in order) that has it;
//   - key NAME of the first Secret matching LabelSelector (in name order)
//     that has it, when LabelSelector is set.
//
// A Secret or key that does not exist is not found (the next provider is
// asked); any other API error is an error (the job is retried).
type Kubernetes struct {
	Client        SecretReader
	Namespace     string
	Mapping       map[string]KubeRef
	Secrets       []string
	LabelSelector string
}

// Name implements Provider.
func (k *Kubernetes) Name() string { return "kubernetes" }

// Lookup implements Provider.
func (k *Kubernetes) Lookup(ctx context.Context, name string) (string, bool, error) {
	if ref, ok := k.Mapping[name]; ok {
		return k.key(ctx, ref.Secret, ref.Key)
	}
	for _, s := range k.Secrets {
		v, ok, err := k.key(ctx, s, name)
		if err != nil || ok {
			return v, ok, err
		}
	}
	if k.LabelSelector == "" {
		return "", false, nil
	}
	list, err := k.Client.List(ctx, metav1.ListOptions{LabelSelector: k.LabelSelector})
	if err != nil {
		return "", false, fmt.Errorf("list secrets in namespace %q with labels %q: %w", k.Namespace, k.LabelSelector, err)
	}
	items := list.Items
	slices.SortFunc(items, func(a, b corev1.Secret) int { return strings.Compare(a.Name, b.Name) })
	for _, s := range items {
		if v, ok := s.Data[name]; ok {
			return string(v), true, nil
		}
	}
	return "", false, nil
}

func (k *Kubernetes) key(ctx context.Context, secret, key string) (string, bool, error) {
	s, err := k.Client.Get(ctx, secret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", false, nil
	case err != nil:
		// API errors (forbidden, timeout) name the Secret, never its data.
		return "", false, fmt.Errorf("get secret %s/%s: %w", k.Namespace, secret, err)
	}
	v, ok := s.Data[key]
	return string(v), ok, nil
}

// ParseKubeMapping reads entries "NAME=secret/key".
func ParseKubeMapping(entries []string) (map[string]KubeRef, error) {
	out := map[string]KubeRef{}
	var errs []error
	for _, e := range entries {
		name, target, ok := strings.Cut(strings.TrimSpace(e), "=")
		secret, key, ok2 := strings.Cut(target, "/")
		if !ok || !ok2 || !validName(name) || secret == "" || key == "" || strings.Contains(key, "/") {
			errs = append(errs, fmt.Errorf("%w: %q must be NAME=secret/key", ErrMapping, e))
			continue
		}
		out[name] = KubeRef{Secret: secret, Key: key}
	}
	return out, errors.Join(errs...)
}

// NewSecretReader is a client for the Secrets of namespace, as the
// kubeconfig file at path says, or as the pod's service account when path
// is empty (in-cluster).
func NewSecretReader(path, namespace string) (SecretReader, error) {
	var rc *rest.Config
	var err error
	if path == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs.CoreV1().Secrets(namespace), nil
}
