#!/usr/bin/env bash
# Build Work Queue from cctools 7.17.1 (the 7.x line that conda-forge's ndcctools ships) out of the
# source tarball in ../shared/engines, into a cache folder outside the checkout, reused on later runs.
#
#   PREFIX=$(tools/build_cctools.sh)
#   PATH=$PREFIX/bin:$PATH PYTHONPATH=$PREFIX/lib/python3.X/site-packages ...
#
# The prefix is the only thing written to stdout (last line); all progress goes to stderr.
# PYTHON names the interpreter to build the module for (default python3).
# PARSL_WQ_ENGINE_CACHE overrides the cache folder (default: $XDG_CACHE_HOME or ~/.cache, /parsl_wq).
set -euo pipefail

version=7.17.1
sha256=f719c09fbbf1e6ec3159293e44b2bfee2e2a32ea7bc1f8faabcfae8ca39f4ea0
tarball="$(dirname "$0")/../../shared/engines/cctools-$version-src.tar.gz"
cache="${PARSL_WQ_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parsl_wq}"
prefix="$cache/cctools-$version"
marker="$prefix/.build-complete"

exec 3>&1 1>&2  # fd 3 is the real stdout, kept for the prefix alone
die() { echo "build_cctools.sh: $*" >&2; exit 1; }
finish() { echo "$prefix" >&3; exit 0; }

[ -f "$marker" ] && finish

# Parallel callers (e.g. test jobs) wait for one build instead of racing on the same folder.
mkdir -p "$cache"
exec 9>"$cache/cctools-$version.lock"
flock 9
[ -f "$marker" ] && finish  # another caller finished it while we waited

[ -f "$tarball" ] || die "source tarball not found: $tarball"
actual=$(sha256sum "$tarball" | cut -d' ' -f1)
[ "$actual" = "$sha256" ] || die "sha256 mismatch for $tarball: got $actual, expected $sha256"

# Without swig, configure silently leaves out the Python module (ndcctools.work_queue).
if ! command -v swig >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    apt_get() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
    apt_get install -y -qq swig || { apt_get update -qq && apt_get install -y -qq swig; } || die "could not install swig"
fi

# The staging folder sits next to the prefix (same file system) so the final mv is one atomic rename.
work=$(mktemp -d "${TMPDIR:-/tmp}/cctools-build.XXXXXX")
staging="$prefix.partial.$$"
trap 'rm -rf "$work" "$staging"' EXIT

echo "Building cctools $version into $prefix..."
tar xzf "$tarball" -C "$work"
cd "$work/cctools-$version"
# --prefix must be the final place: the binaries have it compiled in (INSTALL_PATH, used to find
# resource_monitor and helper libraries), so only the copying step is pointed at the staging folder.
./configure --prefix "$prefix" --with-python3-path "$("${PYTHON:-python3}" -c 'import sys; print(sys.base_prefix)')" \
    --without-system-doc --without-system-parrot --without-system-chirp --without-system-makeflow \
    --without-system-grow --without-system-ftp-lite --without-system-poncho
make -j2
make install CCTOOLS_INSTALL_DIR="$staging"

# Refuse to cache a build that lacks the worker or the Python module.
[[ "$("$staging/bin/work_queue_worker" --version)" == *"$version"* ]] || die "work_queue_worker is not $version"
compgen -G "$staging/lib/python3*/site-packages/ndcctools/work_queue.py" >/dev/null ||
    die "the Python module was not built (is swig working?)"

rm -rf "$prefix"  # leftovers of an unfinished build (no marker)
mv -T "$staging" "$prefix"
touch "$marker"  # last step: only a complete install is ever reused
finish
