// Package ship tests what Outpost ships for Kubernetes: the OCI images of
// make images (bin/images), the Helm charts under deploy/helm (lint, schema,
// real installs into the test kube-apiserver) and the Tiltfile (evaluated
// with go.starlark.net). The tools come from make test-deps: buildah,
// podman, skopeo and runc from Debian, helm in .cache/helm.
package ship
