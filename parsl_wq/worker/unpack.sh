#!/bin/sh
# Worker side of pack=True: unpack an environment once per worker, print its folder.
#
#   sh pwq_unpack.sh TARBALL NAME
#
# The environment goes to WORKSPACE/pwq-envs/NAME, where WORKSPACE is the
# worker's own folder (the parent of each task's sandbox), so every task of the
# worker reuses it and it goes away with the worker. A lock makes concurrent
# tasks on one worker wait for a single unpack; a marker file written last
# makes an unpack cut short by a crash start over. Each unpack appends a line
# to NAME/.pwq-unpacks.
set -eu
tarball=$1
name=$2
root="${WORK_QUEUE_SANDBOX:-$(cd .. && pwd)}/pwq-envs"
env="$root/$name"

if [ ! -f "$env/.pwq-ready" ]; then
    mkdir -p "$root"
    command -v flock >/dev/null || { echo "parsl_wq: flock (util-linux) is needed to unpack environments" >&2; exit 1; }
    exec 9>"$root/$name.lock"
    flock 9
    if [ ! -f "$env/.pwq-ready" ]; then
        rm -rf "$env"
        mkdir -p "$env"
        tar -xzf "$tarball" -C "$env"
        if [ -f "$env/bin/conda-unpack" ]; then
            # its shebang is "/usr/bin/env python", which a node without Python lacks
            "$env/bin/python" "$env/bin/conda-unpack"
        fi
        echo "$(date +%s) $(hostname) $$" >> "$env/.pwq-unpacks"
        touch "$env/.pwq-ready"
    fi
    exec 9>&-
fi
echo "$env"
