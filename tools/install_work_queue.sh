#!/usr/bin/env bash
# Make sure Work Queue (cctools) is installed: the worker binary and its Python module.
# Work Queue is not on PyPI. conda users: conda install -c conda-forge ndcctools.
# Here, Debian's packages are installed when the engine is missing and apt is available.
set -euo pipefail

python=${1:-python3}

have_engine() {
    command -v work_queue_worker >/dev/null 2>&1 &&
        "$python" -c "from parsl_wq.engine import load_work_queue; load_work_queue()" >/dev/null 2>&1
}

if have_engine; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "Work Queue is missing and apt-get is not available." >&2
    echo "Install it with: conda install -c conda-forge ndcctools" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "Installing Work Queue from Debian packages (coop-computing-tools, python3-workqueue)..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq coop-computing-tools python3-workqueue >/dev/null
have_engine || { echo "Work Queue was installed but cannot be loaded by $python" >&2; exit 1; }
