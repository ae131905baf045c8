#!/usr/bin/env bash
# Builds one OCI image per Outpost binary (the four services and the broker)
# with no registry involved, and writes each as an OCI archive:
#
#   bin/images/<name>.tar    (image name outpost/<name>:<version>)
#
# Each image is a static Go binary (CGO_ENABLED=0, version and revision set
# in libs/version) on an empty base (deploy/images/Containerfile), run as
# 65532:65532, with the OCI labels source, revision, version and title.
# buildah keeps its own storage under .cache/buildah (vfs driver, so it works
# inside containers without overlay mounts).
#
#   scripts/build-images.sh                   every image
#   scripts/build-images.sh scheduler         only the named ones
#   VERSION=v1.2.3 scripts/build-images.sh    the version stamped in (default: git describe)
#   GOARCH=arm64 scripts/build-images.sh      another platform (linux only)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

log() { echo "build-images: $*"; }
die() {
	echo "build-images: $*" >&2
	exit 1
}

command -v buildah >/dev/null || die "buildah is missing: run scripts/install-image-tools.sh (make test-deps)"

all=(scheduler account-migrator k8s-watcher ingestion-runner outpost-broker)
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${all[@]}")

VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}"
REVISION="${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
SOURCE="${SOURCE:-https://github.com/outposthq/outpost}"
GOARCH="${GOARCH:-$(go env GOARCH)}"
out="$root/bin/images"
store="$root/.cache/buildah"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -s "$ca_bundle" ]] || die "no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates)"

buildah_() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/outpost-images.XXXXXX")"
# shellcheck disable=SC2064 # expand $work now
trap "rm -rf '$work'" EXIT
mkdir -p "$out" "$store"
cp "$ca_bundle" "$work/ca-certificates.crt"

pkg="github.com/outposthq/outpost/libs/version"
ldflags="-s -w -X $pkg.Version=$VERSION -X $pkg.Revision=$REVISION"

for name in "${names[@]}"; do
	case "$name" in
	outpost-broker) dir=libs target=./cmd/outpost-broker ;;
	scheduler | account-migrator | k8s-watcher | ingestion-runner) dir="services/$name" target=. ;;
	*) die "unknown image '$name' (one of: ${all[*]})" ;;
	esac
	log "$name: go build (CGO_ENABLED=0, linux/$GOARCH, $VERSION)"
	(cd "$dir" && CGO_ENABLED=0 GOOS=linux GOARCH="$GOARCH" go build -trimpath -ldflags "$ldflags" -o "$work/$name" "$target") ||
		die "go build of $name failed"
	image="localhost/outpost/$name:$VERSION"
	sed "s/@BINARY@/$name/g" deploy/images/Containerfile >"$work/Containerfile.$name"
	buildah_ bud --quiet --platform "linux/$GOARCH" \
		--label "org.opencontainers.image.source=$SOURCE" \
		--label "org.opencontainers.image.revision=$REVISION" \
		--label "org.opencontainers.image.version=$VERSION" \
		--label "org.opencontainers.image.title=$name" \
		-t "$image" -f "$work/Containerfile.$name" "$work" >/dev/null || die "buildah bud of $name failed"
	rm -f "$out/$name.tar"
	buildah_ push --quiet "$image" "oci-archive:$out/$name.tar:outpost/$name:$VERSION" ||
		die "buildah push of $name to $out/$name.tar failed"
	buildah_ rmi "$image" >/dev/null 2>&1 || true
	log "$name: bin/images/$name.tar (outpost/$name:$VERSION)"
done
