#!/usr/bin/env bash
# make helm-lint: `helm lint --strict --with-subcharts` of the umbrella chart
# with each profile, then the chart tests of tests/ship: values that break
# the schemas, and real `helm install`s of every profile into the test
# kube-apiserver (libs/kubetest), whose objects are then checked.
#
# Needs helm (scripts/install-helm.sh) and kube-apiserver, kubectl and etcd
# (scripts/install-kube.sh); the Makefile target runs both first.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
helm="${OUTPOST_HELM:-$PWD/.cache/helm/$HELM_VERSION/helm}"
[[ -x "$helm" ]] || {
	echo "helm-lint: no helm at $helm: run scripts/install-helm.sh" >&2
	exit 1
}
chart=deploy/helm/outpost
for profile in vendor customer dev; do
	echo "== helm lint --strict --with-subcharts ($profile)"
	"$helm" lint --strict --with-subcharts "$chart" -f "$chart/values-$profile.yaml"
done
echo "== chart tests: schemas, real installs into the test kube-apiserver"
cd tests && CI="${CI:-}" go test -count=1 -p 1 -run 'TestHelm|TestChartFiles' ./ship/
