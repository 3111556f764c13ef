#!/usr/bin/env bash
# The container image without a daemon (make image / make wheelhouse / make image-run; docs/deploy.md).
#
#   deploy/image.sh build      base (mmdebstrap), wheelhouse and image, each rebuilt only when its
#                              inputs changed (a stamp file holds their hash); buildah builds
#                              deploy/Containerfile as m2fp-batch:<package version>
#   deploy/image.sh wheelhouse the wheelhouse alone (.image/wheels), for `docker build`
#   deploy/image.sh run ARGS   podman run the image with the flags this machine needs
#   deploy/image.sh name       print the image's name:tag
#
# Everything lives in .image/ of this checkout: the wheelhouse, the stamps and a storage root of
# its own, so nothing touches another user's images and a clean clone builds the same way.
# Settings from the environment: MODEL_DIR (bake a model dir into the image), IMAGE_OPTS (more
# podman run options, e.g. -v mounts), DEBIAN_MIRROR, PYTHON (runs pip on the host).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
REPO=$PWD
STATE=$REPO/.image
NAME=m2fp-batch
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
IMAGE=localhost/$NAME:$VERSION
PYTHON=${PYTHON:-python3}
EXTRAS=job,serve,report  # the job, the service, Ray and the report; the review tools stay out
SUITE=bookworm    # Debian 12: Python 3.11, the minor of python:3.11-slim-bookworm
DEBIAN_PACKAGES=python3,python3-venv,ca-certificates,libgomp1,passwd,wget  # wget: KubeRay's probes

mkdir -p "$STATE"

# overlay where the kernel mounts it here (a container's copy costs nothing), else vfs (every layer
# and every container a full copy: ../shared/ENVIRONMENT.md); probed once per checkout
storage_driver() {
    if [ ! -f "$STATE/driver" ]; then
        local probe driver=vfs
        probe=$(mktemp -d "$STATE/probe.XXXXXX")
        mkdir "$probe"/{lower,upper,work,merged}
        if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
            "$probe/merged" 2>/dev/null; then
            umount "$probe/merged" && driver=overlay
        fi
        rm -rf "$probe"
        echo "$driver" >"$STATE/driver"
    fi
    cat "$STATE/driver"
}

# a storage root of this checkout's own (one per driver); the run root (sockets, short paths) keyed to it
DRIVER=$(storage_driver)
cat >"$STATE/storage.conf" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$STATE/storage-$DRIVER"
runroot = "/tmp/m2fp-image-$(printf %s "$REPO" | sha1sum | cut -c1-12)"
EOF
export CONTAINERS_STORAGE_CONF=$STATE/storage.conf CONTAINERS_CONF=$REPO/deploy/containers.conf

say() { printf 'make image: %s\n' "$*" >&2; }
hash_of() { sha256sum | cut -c1-16; }

# "URI suite" of each Debian source apt uses here (deb822 files), DEBIAN_MIRROR wins
debian_sources() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "deb $DEBIAN_MIRROR $SUITE main"
        return
    fi
    awk '/^URIs:/ {uri = $2} /^Suites:/ {for (i = 2; i <= NF; i++) print "deb " uri " " $i " main"}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -E " $SUITE(-security|-updates)? main$" \
        || echo "deb http://deb.debian.org/debian $SUITE main"
}

# the base image: a Debian root filesystem from Debian's packages (no base-image registry)
build_base() {
    local sources key tag
    sources=$(debian_sources)
    key=$(printf '%s\n' "$SUITE" "$DEBIAN_PACKAGES" "$sources" | hash_of)
    tag=localhost/m2fp-base:$key
    if [ "$(cat "$STATE/base.stamp" 2>/dev/null)" = "$key" ] && buildah inspect --type image "$tag" >/dev/null 2>&1; then
        say "base $tag reused"
        echo "$tag"
        return
    fi
    local t0=$SECONDS dir=$STATE/base
    rm -rf "$dir" && mkdir -p "$dir"
    local -a mirrors
    mapfile -t mirrors <<<"$sources"
    mmdebstrap --quiet --variant=minbase --include="$DEBIAN_PACKAGES" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$SUITE" "$dir/rootfs.tar" "${mirrors[@]}"
    printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' >"$dir/Containerfile"
    buildah bud --quiet --isolation chroot -f "$dir/Containerfile" -t "$tag" "$dir" >/dev/null
    rm -rf "$dir"
    for old in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep '/m2fp-base:' | grep -v ":$key\$" || true); do
        buildah rmi "$old" >/dev/null || true
    done
    echo "$key" >"$STATE/base.stamp"
    say "base $tag built in $((SECONDS - t0)) s"
    echo "$tag"
}

# the image's requirements: the torch CPU pin, the package's dependencies and the EXTRAS
requirements() {
    "$PYTHON" - "$EXTRAS" <<'EOF'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
reqs = list(project["dependencies"])
for extra in sys.argv[1].split(","):
    reqs += project["optional-dependencies"][extra]
print("\n".join(sorted(dict.fromkeys(reqs))))
EOF
}

# pip wheel, without the warnings about this machine's empty local index folders
pip_wheel() {
    "$PYTHON" -m pip wheel --quiet "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2)
}

# .image/wheels: every dependency as a wheel (rebuilt when the requirements change) and this
# checkout's own wheel (every time); requirements.txt is what the Containerfile installs
build_wheelhouse() {
    local wheels=$STATE/wheels reqs key t0=$SECONDS
    reqs=$(requirements)
    key=$({ echo "$reqs"; "$PYTHON" -V; cat /etc/xdg/pip/constraints.txt 2>/dev/null || true; } | hash_of)
    if [ "$(cat "$wheels/.stamp" 2>/dev/null)" = "$key" ]; then
        say "wheelhouse reused ($(du -sh "$wheels" | cut -f1))"
    else
        rm -rf "$wheels" && mkdir -p "$wheels"
        echo "$reqs" >"$STATE/deps.txt"
        pip_wheel --wheel-dir "$wheels" -r "$STATE/deps.txt"
        echo "$key" >"$wheels/.stamp"
        say "wheelhouse built in $((SECONDS - t0)) s ($(du -sh "$wheels" | cut -f1))"
    fi
    # the package itself from the files git knows (tracked and new), never a stale build/ dir
    local src
    src=$(mktemp -d)
    git ls-files -z --cached --others --exclude-standard \
        | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$src"
    rm -f "$wheels"/m2fp_batch-*.whl
    pip_wheel --no-deps --wheel-dir "$wheels" "$src"
    rm -rf "$src"
    printf '%s\nm2fp-batch[%s]==%s\n' "$(echo "$reqs" | grep '^torch==')" "$EXTRAS" "$VERSION" >"$wheels/requirements.txt"
}

# .image/model: MODEL_DIR copied into the build context (the Containerfile's MODEL_DIR argument)
stage_model() {
    rm -rf "$STATE/model"
    if [ -n "${MODEL_DIR:-}" ]; then
        test -f "$MODEL_DIR/configuration.json" || { echo "make image: MODEL_DIR=$MODEL_DIR holds no configuration.json" >&2; exit 2; }
        cp -r "$MODEL_DIR" "$STATE/model"
        echo ".image/model"
    fi
}

# the hash of what the image holds besides the base and the wheelhouse: the package's sources,
# jobs/, configs/, deploy/ (the Containerfile too) and MODEL_DIR's files
image_key() {
    {
        echo "$1" "$(cat "$STATE/wheels/.stamp")" "${MODEL_DIR:-}"
        git ls-files -z --cached --others --exclude-standard -- pyproject.toml m2fp_batch jobs configs deploy \
            | xargs -0 sha256sum 2>/dev/null
        if [ -n "${MODEL_DIR:-}" ]; then find "$MODEL_DIR" -type f -print0 | sort -z | xargs -0 sha256sum; fi
    } | hash_of
}

build() {
    local t0=$SECONDS base model source key
    base=$(build_base)
    build_wheelhouse
    key=$(image_key "$base")
    if [ "$(cat "$STATE/image.stamp" 2>/dev/null)" = "$key" ] && podman image exists "$IMAGE"; then
        say "$IMAGE reused (its inputs are unchanged): $(($(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000)) MB"
        return
    fi
    model=$(stage_model)
    source=$(git config --get remote.origin.url || echo "$NAME")
    local t1=$SECONDS
    buildah bud --quiet --isolation chroot --layers=false -f deploy/Containerfile \
        --build-arg BASE="$base" --build-arg MODEL_DIR="$model" --build-arg VERSION="$VERSION" \
        --build-arg SOURCE="$source" --build-arg REVISION="$(git rev-parse HEAD)" -t "$IMAGE" . >/dev/null
    rm -rf "$STATE/model"
    podman image prune --force >/dev/null  # the image this tag named before, now untagged
    echo "$key" >"$STATE/image.stamp"
    local bytes
    bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
    say "$IMAGE: $((bytes / 1000000)) MB, built in $((SECONDS - t0)) s (buildah $((SECONDS - t1)) s)"
}

run() {
    # host network (servers bind 127.0.0.1 unless told), ulimits as the host's, room for Ray's
    # object store in /dev/shm; IMAGE_OPTS adds mounts (-v DIR:/models/m2fp:ro) and the like
    # shellcheck disable=SC2086
    exec podman run --rm --network host --ulimit host --shm-size 2g ${IMAGE_OPTS:-} "$IMAGE" "$@"
}

case "${1:-}" in
    build) build ;;
    wheelhouse) build_wheelhouse ;;
    run) shift && run "$@" ;;
    name) echo "$IMAGE" ;;
    *) echo "usage: deploy/image.sh build|wheelhouse|run ARGS|name" >&2 && exit 2 ;;
esac
