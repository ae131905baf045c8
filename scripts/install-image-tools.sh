#!/usr/bin/env bash
# Installs what `make images` and the image test (tests/ship) need, from
# Debian: buildah (builds the images from deploy/images/Containerfile),
# skopeo (reads the archives), podman and runc (run each image's -version;
# podman's default runtime, crun, fails on some hosts' cgroups, so the test
# points podman at runc). Idempotent: nothing is installed when all four are
# on PATH.
set -euo pipefail

tools=(buildah podman skopeo runc)
missing=()
for t in "${tools[@]}"; do
	command -v "$t" >/dev/null || missing+=("$t")
done
if [[ ${#missing[@]} -eq 0 ]]; then
	echo "install-image-tools: buildah, podman, skopeo and runc present"
	exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
	echo "install-image-tools: missing ${missing[*]}: install as root with 'apt-get install -y ${missing[*]}'" >&2
	exit 1
fi
echo "install-image-tools: installing ${missing[*]} from Debian"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for t in "${missing[@]}"; do
	command -v "$t" >/dev/null || {
		echo "install-image-tools: $t installed but not on PATH" >&2
		exit 1
	}
done
echo "install-image-tools: installed ${missing[*]}"
