#!/usr/bin/env bash
# Build the bids-glm image with podman and check it against a native run.
#
# For a Debian 12 machine with no Docker engine and no container registry, run as root by
# .ci/run after `pip install .` into the active virtualenv (so `bids-glm`, `bids-glm-demo`
# and a python with nibabel are on PATH):
#   1. install podman, runc, debootstrap (Debian packages) if missing;
#   2. debootstrap a slim Debian 12 root file system (tarball cached in $BIDS_GLM_CACHE),
#      `podman import` it as docker.io/library/debian:bookworm-slim (the Dockerfile's FROM);
#   3. build the Dockerfile with podman, print the image size;
#   4. run the image exactly as the README says (read-only root, read-only input bind,
#      non-root user) on the demo data: --version, participant level, group level, and the
#      BIDS validator;
#   5. run the same natively and compare: same files, NIfTI maps equal within 1e-6, all other
#      files equal once host paths are mapped to the container's mount points;
#   6. check that the input folder is unchanged.
# Everything podman stores lives in a temporary folder removed at exit.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BIDS_GLM_CACHE:-$HOME/.cache/bids-glm}
PYTHON=${PYTHON:-python3}
RUN_AS=${RUN_AS:-4242:4242}   # a non-root uid:gid with no account in the image
BASE_IMAGE=docker.io/library/debian:bookworm-slim
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/bids_glm/__init__.py")
IMAGE=docker.io/bidsglm/bids-glm:$VERSION
MAX_ABS_DIFF=1e-6
START_S=$SECONDS

WORK=$(mktemp -d /tmp/bids-glm-container.XXXXXX)
FAILURES=()
RESULTS=()

cleanup() {
  local status=$?
  if command -v podman >/dev/null && [ -f "$WORK/podman/storage.conf" ]; then
    podman rmi --all --force >/dev/null 2>&1 || true
  fi
  findmnt -rn -o TARGET | { grep "^$WORK" || true; } | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*"; }
pass() { RESULTS+=("PASS  $1"); echo "PASS: $1"; }
fail() { RESULTS+=("FAIL  $1"); FAILURES+=("$1"); echo "FAIL: $1" >&2; }
timed() {  # timed LABEL COMMAND...: run COMMAND, print its wall time
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "[time] $label: $((SECONDS - start)) s"
}

# ---------------------------------------------------------------------------------------
log "1. packages"
export DEBIAN_FRONTEND=noninteractive
missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap newuidmap:uidmap \
  fuse-overlayfs:fuse-overlayfs; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  timed "apt-get install ${missing[*]}" bash -c \
    "apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends ${missing[*]} >/dev/null"
fi
for tool in "$PYTHON" bids-glm bids-glm-demo; do
  command -v "$tool" >/dev/null || { echo "$tool not on PATH (pip install . first)" >&2; exit 1; }
done

# ---------------------------------------------------------------------------------------
log "2. podman configuration (storage under $WORK)"
mkdir -p "$WORK/podman" "$WORK/tmp"
cat >"$WORK/podman/containers.conf" <<'EOF'
[containers]
# without CAP_SYS_RESOURCE, podman's rootful default ulimits fail with EPERM
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
# crun refuses this machine's hybrid cgroup v1/v2 layout
runtime = "runc"
EOF
cat >"$WORK/podman/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/runroot"
EOF
export CONTAINERS_CONF="$WORK/podman/containers.conf"
export CONTAINERS_STORAGE_CONF="$WORK/podman/storage.conf"
export TMPDIR="$WORK/tmp"
podman --version

# ---------------------------------------------------------------------------------------
log "3. base image $BASE_IMAGE from debootstrap (cache: $CACHE)"
debian_mirror() {  # the machine's own Debian mirror (deb822 or one-line sources)
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
    /etc/apt/sources.list.d/*.list 2>/dev/null | grep -oE 'https?://[^ ]+/debian/?( |$)' \
    | head -n 1 | tr -d ' ' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
make_base_tarball() {  # make_base_tarball TARBALL: a slim Debian 12 root file system
  local tarball=$1 rootfs=$WORK/rootfs mirror
  mirror=$(debian_mirror)
  mirror=${mirror%/}
  echo "debootstrap from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; return 1; }
  # what Debian's official -slim images do: no docs, man pages, locales; apt keeps no cache
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s-security bookworm-security main\n' \
    "$mirror" "$mirror" "$mirror" >"$rootfs/etc/apt/sources.list"
  mkdir -p "$(dirname "$tarball")"
  tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  rm -rf "$rootfs"
}
TARBALL=$CACHE/debian-bookworm-slim-rootfs.tar
if [ -s "$TARBALL" ]; then
  echo "cached: $TARBALL"
else
  timed "debootstrap + tar" make_base_tarball "$TARBALL"
fi
timed "podman import" podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' "$TARBALL" "$BASE_IMAGE" >/dev/null

# ---------------------------------------------------------------------------------------
log "4. build $IMAGE"
secret=()
CA_BUNDLE=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$CA_BUNDLE" ] && secret=(--secret "id=hostca,src=$CA_BUNDLE")
build_image() {
  podman build --pull=never --network host "${secret[@]}" \
    --build-arg "VERSION=$VERSION" --build-arg "IMAGE_TAG=$IMAGE" \
    -t "$IMAGE" -f "$REPO/Dockerfile" "$REPO" >"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; return 1; }
}
timed "podman build" build_image
IMAGE_BYTES=$(podman image inspect --format '{{.Size}}' "$IMAGE")
IMAGE_MB=$((IMAGE_BYTES / 1000000))
echo "image size: $IMAGE_MB MB (base $(( $(podman image inspect --format '{{.Size}}' \
  "$BASE_IMAGE") / 1000000 )) MB)"

# `docker run` as the README says; podman's --read-only also mounts tmpfs on /tmp, /var/tmp
# and /run unless told not to, which docker does not do, so that is turned off.
docker_run() { podman run --pull=never --read-only-tmpfs=false "$@"; }

# ---------------------------------------------------------------------------------------
log "5. demo data (native bids-glm-demo)"
DATA=$WORK/data
timed "bids-glm-demo --no-run" bids-glm-demo "$DATA" --no-run >/dev/null
BIDS=$DATA/bids
input_fingerprint() {  # every path, type, size, mtime, and the content of every file
  (cd "$BIDS" && find . -printf '%y %p %s %T@\n' | LC_ALL=C sort \
    && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum
}
INPUT_BEFORE=$(input_fingerprint)

C_OUT=$WORK/container/out
C_WORK=$WORK/container/work
mkdir -p "$C_OUT" "$C_WORK"
chown "$RUN_AS" "$C_OUT" "$C_WORK"

# ---------------------------------------------------------------------------------------
log "6. container runs (--read-only, input :ro, -u $RUN_AS)"
version_out=$(docker_run --rm --read-only --network none -u "$RUN_AS" "$IMAGE" --version 2>&1) \
  || true
if [ "$version_out" = "bids-glm $VERSION" ]; then
  pass "--version prints '$version_out'"
else
  fail "--version printed '$version_out', expected 'bids-glm $VERSION'"
fi

container_level() {  # container_level LEVEL: the README's docker command for one level
  set -x
  docker_run --rm --read-only --network none -u "$RUN_AS" \
    -v "$BIDS:/bids:ro" -v "$C_OUT:/out" -v "$C_WORK:/work" \
    "$IMAGE" /bids /out "$1" --work-dir /work
  { set +x; } 2>/dev/null
}
for level in participant group; do
  if timed "container $level" container_level "$level" >"$WORK/container-$level.log" 2>&1; then
    pass "container $level level"
  else
    fail "container $level level (log below)"
    cat "$WORK/container-$level.log" >&2
  fi
done
# a library that swallowed a failed write (read-only root) would say so on stderr
if grep -iE 'read-only file system|not a writable|no writable cache|permission denied' \
  "$WORK"/container-*.log; then
  fail "container logs mention failed writes"
else
  pass "no failed-write messages in the container logs"
fi
echo "container work dir holds: $(cd "$C_WORK" && find . -mindepth 1 -maxdepth 2 | sort | tr '\n' ' ')"
# caches are built into the image (bytecode, fontconfig): none should be written at run time
if [ -e "$C_WORK/.cache" ]; then
  fail "a library wrote a cache at run time: $(cd "$C_WORK" && find .cache -maxdepth 2 | tr '\n' ' ')"
else
  pass "no cache written at run time (work dir holds no .cache)"
fi

validator() {  # the README's validator command
  docker_run --rm --read-only --network none -u "$RUN_AS" \
    -v "$BIDS:/bids:ro" -v "$C_WORK:/work" -e NO_COLOR=1 \
    --entrypoint bids-validator-deno "$IMAGE" /bids
}
if validator >"$WORK/validator.log" 2>&1; then
  pass "bids-validator-deno in the read-only container: demo dataset valid (exit 0)"
else
  fail "bids-validator-deno in the read-only container (log below)"
  tail -n 30 "$WORK/validator.log" >&2
fi

# WeasyPrint (PDF reports) with its system libraries, as the report would call it
weasyprint_pdf() {
  docker_run --rm --read-only --network none -u "$RUN_AS" -v "$C_WORK:/work" \
    --entrypoint python "$IMAGE" -c 'import weasyprint
html = "<h1>bids-glm</h1><p>z &gt; 3.1: 42 voxels</p>"
weasyprint.HTML(string=html).write_pdf("/work/weasyprint-check.pdf")'
}
if weasyprint_pdf >"$WORK/weasyprint.log" 2>&1 && [ ! -s "$WORK/weasyprint.log" ] \
  && [ "$(head -c 4 "$C_WORK/weasyprint-check.pdf")" = "%PDF" ]; then
  pass "WeasyPrint writes a PDF in the read-only container, with no warnings"
else
  fail "WeasyPrint in the read-only container (log below)"
  cat "$WORK/weasyprint.log" >&2
fi
rm -f "$C_WORK/weasyprint-check.pdf"

# ---------------------------------------------------------------------------------------
log "7. native runs"
N_OUT=$WORK/native/out
N_WORK=$WORK/native/work
mkdir -p "$N_OUT" "$N_WORK"
for level in participant group; do
  if timed "native $level" bids-glm "$BIDS" "$N_OUT" "$level" --work-dir "$N_WORK" \
    >"$WORK/native-$level.log" 2>&1; then
    pass "native $level level"
  else
    fail "native $level level"
    cat "$WORK/native-$level.log" >&2
  fi
done

if [ "$(input_fingerprint)" = "$INPUT_BEFORE" ]; then
  pass "input folder unchanged (paths, sizes, mtimes, contents)"
else
  fail "input folder changed"
fi

# ---------------------------------------------------------------------------------------
log "8. container vs native outputs"
# Files allowed to differ, and why (anything else must match):
#  - dataset_description.json: GeneratedBy[].Container names the image (checked to be
#    exactly the image tag); everything else must match once paths are mapped;
#  - logs/manifests/*.json: Fingerprint hashes the absolute input paths, ElapsedSeconds is a
#    timing, Software holds the library versions of each install (listed when they differ),
#    Outputs' sizes are those of gzip streams (only the names are compared); everything
#    else must match;
#  - logs/CITATION.*: name the library versions; must match once versions are mapped;
#  - *.pdf: PDF creation date; sub-*.html, group.html reports and figures/: drawn from the maps
#    (last-digit differences allowed), listed but not compared byte for byte.
# NIfTI images: same shape, affine and dtype; voxel values within MAX_ABS_DIFF.
# TSV and JSON: numbers within MAX_ABS_DIFF (relative for large values), the rest identical.
if compare_out=$("$PYTHON" - "$N_OUT" "$C_OUT" "$BIDS" "$N_WORK" "$IMAGE" "$MAX_ABS_DIFF" \
  <<'PYTHON'
"""Compare a native and a container output folder of bids-glm."""

import fnmatch
import json
import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

native_root, container_root = Path(sys.argv[1]), Path(sys.argv[2])
bids_dir, native_work, image_tag = sys.argv[3], sys.argv[4], sys.argv[5]
tolerance = float(sys.argv[6])
# host path -> the container's mount point (longest first: the output may lie inside)
PATH_MAP = sorted(
    [(bids_dir, "/bids"), (str(native_root), "/out"), (native_work, "/work")],
    key=lambda pair: -len(pair[0]),
)
LISTED_ONLY = ("*.pdf", "sub-*.html", "group.html", "*/figures/*", "figures/*")
DROPPED_KEYS = {"Fingerprint", "ElapsedSeconds", "Software"}


def to_container_paths(text: str) -> str:
    """Host paths of the native run written as the container's mount points."""
    for host, mount in PATH_MAP:
        text = text.replace(host, mount)
    return text


def software(root: Path) -> dict:
    """Library versions recorded in the first manifest (empty if none)."""
    for path in sorted((root / "logs" / "manifests").glob("*.json")):
        return json.loads(path.read_text())["Summary"].get("Software", {})
    return {}


def differences(a, b, where: str = "") -> list[str]:
    """Where two structures differ; numbers within the tolerance (relative above 1) match."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where or '/'}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} != {len(b)} items"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{where}[{i}]")
        ]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        if math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance):
            return []
    elif a == b:
        return []
    return [f"{where}: {a!r} != {b!r}"]


def without(data, keys: set):
    """``data`` with the given keys removed at any depth."""
    if isinstance(data, dict):
        return {k: without(v, keys) for k, v in data.items() if k not in keys}
    if isinstance(data, list):
        return [without(v, keys) for v in data]
    return data


def tsv_cells(text: str) -> list:
    """A TSV's cells, numbers parsed."""
    rows = []
    for line in text.splitlines():
        cells = []
        for cell in line.split("\t"):
            try:
                cells.append(float(cell))
            except ValueError:
                cells.append(cell)
        rows.append(cells)
    return rows


def nifti_difference(native: Path, container: Path) -> float:
    """Largest absolute voxel difference (inf if shape, affine or dtype differ)."""
    a, b = nib.load(native), nib.load(container)
    if a.shape != b.shape or a.get_data_dtype() != b.get_data_dtype():
        return math.inf
    if not np.allclose(a.affine, b.affine, rtol=0, atol=1e-9):
        return math.inf
    x, y = np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)
    if not np.array_equal(np.isnan(x), np.isnan(y)):
        return math.inf
    finite = ~np.isnan(x)
    return float(np.max(np.abs(x[finite] - y[finite]), initial=0.0))


def text_differences(
    relative: str, native_text: str, container_text: str, versions: dict
) -> list[str]:
    """How a text file of the container differs from the native one (rules above)."""
    native_text = to_container_paths(native_text)
    for container_version, native_version in versions.items():
        container_text = container_text.replace(container_version, native_version)
    if relative.endswith(".json"):
        a, b = json.loads(native_text), json.loads(container_text)
        if relative == "dataset_description.json":
            containers = [g.pop("Container", None) for g in b["GeneratedBy"]]
            expected = {"Type": "docker", "Tag": image_tag}
            if containers != [expected]:
                return [f"GeneratedBy Container {containers} != {expected}"]
        if relative.startswith("logs/manifests/"):
            # output sizes are those of gzip streams of maps equal only within the tolerance
            a, b = ({**without(m, DROPPED_KEYS), "Outputs": sorted(m["Outputs"])} for m in (a, b))
        return differences(a, b)
    if relative.endswith(".tsv"):
        return differences(tsv_cells(native_text), tsv_cells(container_text))
    return [] if native_text == container_text else ["text differs"]


def main() -> int:
    """Print the comparison; return 1 if the folders differ beyond what is allowed."""
    native = {p.relative_to(native_root).as_posix() for p in native_root.rglob("*") if p.is_file()}
    container = {
        p.relative_to(container_root).as_posix() for p in container_root.rglob("*") if p.is_file()
    }
    ok = True
    for label, names in (
        ("only native", native - container),
        ("only container", container - native),
    ):
        if names:
            ok = False
            print(f"  {label}: {sorted(names)[:10]} ({len(names)} file(s))")
    native_sw, container_sw = software(native_root), software(container_root)
    versions = {
        container_sw[k]: native_sw[k]
        for k in container_sw
        if k in native_sw and container_sw[k] != native_sw[k]
    }
    for package in sorted(set(native_sw) | set(container_sw)):
        if native_sw.get(package) != container_sw.get(package):
            print(
                f"  library versions differ: {package} native {native_sw.get(package)}"
                f" container {container_sw.get(package)}"
            )
    n_nifti, largest, largest_z, listed = 0, 0.0, 0.0, []
    for relative in sorted(native & container):
        a, b = native_root / relative, container_root / relative
        if any(fnmatch.fnmatch(relative, pattern) for pattern in LISTED_ONLY):
            listed.append(relative)
        elif relative.endswith((".nii", ".nii.gz")):
            n_nifti += 1
            difference = nifti_difference(a, b)
            largest = max(largest, difference)
            if "_stat-z_" in relative:
                largest_z = max(largest_z, difference)
            if not difference <= tolerance:
                ok = False
                print(f"  {relative}: max |difference| {difference:.3g} > {tolerance:g}")
        elif found := text_differences(relative, a.read_text(), b.read_text(), versions):
            ok = False
            print(f"  {relative}: {'; '.join(found[:3])}")
    print(
        f"  {len(native & container)} common files; {n_nifti} NIfTI images, max |difference|"
        f" {largest:.3g} (z maps {largest_z:.3g}); {len(listed)} listed only: {listed[:5]}"
    )
    return 0 if ok else 1


sys.exit(main())
PYTHON
); then
  echo "$compare_out"
  pass "container outputs equal native outputs (NIfTI within $MAX_ABS_DIFF)"
else
  echo "$compare_out"
  fail "container outputs differ from native outputs"
fi

# ---------------------------------------------------------------------------------------
TOTAL_S=$((SECONDS - START_S))
log "summary"
printf '%s\n' "${RESULTS[@]}"
echo "image $IMAGE: $IMAGE_MB MB; total time $TOTAL_S s"
if [ ${#FAILURES[@]} -gt 0 ]; then
  echo "test_container.sh: FAIL (${#FAILURES[@]} check(s) failed)"
  exit 1
fi
echo "test_container.sh: PASS"
