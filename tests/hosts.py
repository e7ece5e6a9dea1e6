"""Worker hosts for tests: network namespaces on a private bridge of this machine.

Each host is a network namespace with one veth on a bridge that exists only
inside this machine (10.213.N.0/24); the manager is reached at the bridge's
address. A worker runs in its host with a mount namespace of its own: a
tmpfs is mounted over the test's temporary directory (which holds the run
directory and every input file), so nothing reaches the worker through the
filesystem; it gets the password as a copy and works in that tmpfs.
"""

import os
import shlex
import shutil
import subprocess
import time
from typing import Dict, List, Mapping, Sequence

import pytest

SUFFIX = os.getpid() % 10000


def skip_unless_namespaces_work() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def run(*command: str) -> None:
    """Run an ``ip`` command; tried 3 times, as the kernel may still be tearing down an old namespace."""
    for attempt in range(3):
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")


class Hosts:
    """``count`` worker hosts named h1..hN, reachable from this namespace at ``manager_address``."""

    def __init__(self, count: int, private_dir: str):
        self.count = count
        self.private_dir = private_dir
        self.subnet = f"10.213.{SUFFIX % 250}"
        self.manager_address = f"{self.subnet}.1"
        self.bridge = f"pwqbr{SUFFIX}"
        self.workers: Dict[str, List[subprocess.Popen]] = {}

    def namespace(self, host: int) -> str:
        return f"pwq{SUFFIX}-h{host}"

    def veth(self, host: int) -> str:
        return f"pwqv{SUFFIX}h{host}"

    def address(self, host: int) -> str:
        return f"{self.subnet}.{10 + host}"

    def up(self) -> "Hosts":
        """Create the bridge and the hosts; on failure, remove what was made and raise."""
        self.down()     # leftovers of an interrupted run with the same names
        try:
            self._create()
        except Exception:
            self.down()
            raise
        return self

    def _create(self) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.manager_address}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for host in range(1, self.count + 1):
            ns = self.namespace(host)
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", self.veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", self.veth(host), "master", self.bridge, "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for processes in self.workers.values():
            for p in processes:
                _kill_group(p)
        for host in range(1, self.count + 1):
            # the veth pair first: it would otherwise go only when the kernel gets round to
            # destroying the namespace, and the next test's veth of the same name would clash
            subprocess.run(["ip", "link", "del", self.veth(host)], capture_output=True)
            subprocess.run(["ip", "netns", "del", self.namespace(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def start_worker(self, host: int, executor, options: str = "", restart: bool = False,
                     hide: Sequence[str] = (), replace: Mapping[str, str] = {}) -> subprocess.Popen:
        """Start a ``work_queue_worker`` for ``executor`` on host ``host``; with ``restart``, again whenever it exits.

        The password is read before the tmpfs hides it and written to a copy
        inside; it never appears on a command line. Each folder in ``hide`` gets
        an empty tmpfs over it (a node without that software); each file in it,
        /dev/null instead (a node without that program). Each file ``path`` in
        ``replace`` shows the file ``replace[path]`` instead (a node whose program
        of that name is another one).
        """
        port, password_file = executor.worker_port, executor._secrets.password_file
        worker = "work_queue_worker -s \"$D/work\" --connect-timeout 60"
        if executor._secrets.tls_files:
            worker += " --ssl"
        steps = ["set -e"]
        if password_file:
            steps.append(f"PW=$(cat {shlex.quote(password_file)})")
            worker += " --password \"$D/pw\""
        steps += [f"D={shlex.quote(self.private_dir)}",
                  "mount -t tmpfs tmpfs \"$D\"",
                  "mkdir \"$D/work\""]
        if password_file:
            steps.append("printf '%s\\n' \"$PW\" > \"$D/pw\"")
        for path in hide:
            kind = "-t tmpfs tmpfs" if os.path.isdir(path) else "--bind /dev/null"
            steps.append(f"mount {kind} {shlex.quote(path)}")
        for path, source in replace.items():
            steps.append(f"mount --bind {shlex.quote(source)} {shlex.quote(path)}")
        steps += [f"printf '127.0.0.1 localhost h{host}\\n' > \"$D/hosts\"",
                  "mount --bind \"$D/hosts\" /etc/hosts",
                  f"hostname h{host}"]
        worker += f" {options} {self.manager_address} {port}"
        steps.append(f"while true; do {worker} || true; sleep 0.2; done" if restart else f"exec {worker}")
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(host), "unshare", "--uts", "--mount", "sh", "-c", "; ".join(steps)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.workers.setdefault(f"h{host}", []).append(process)
        return process

    def run_block(self, host: int, command: str, hide: Sequence[str] = (),
                  keep: Sequence[str] = ()) -> subprocess.Popen:
        """Run a provider block's ``command`` on host ``host``, as a batch system would: from a script file,
        with a tmpfs over the test's folder, over /tmp (the node's own) and over each folder in ``hide``. Each
        folder in ``keep`` stays in sight though it is under /tmp (a checkout there: its Python, its tests)."""
        script = os.path.join(self.private_dir, f"block-h{host}-{len(self.workers.get(f'h{host}', []))}.sh")
        with open(script, "w") as f:
            f.write(command + "\n")
        os.chmod(script, 0o700)
        steps = ["set -e", f"S=$(cat {shlex.quote(script)})", f"D={shlex.quote(self.private_dir)}",
                 "mount -t tmpfs tmpfs /mnt"]       # the namespace's own: where kept folders wait for the new /tmp
        steps += [f"mkdir /mnt/{i} && mount --bind {shlex.quote(path)} /mnt/{i}" for i, path in enumerate(keep)]
        steps += ["mount -t tmpfs tmpfs \"$D\"", "mount -t tmpfs tmpfs /tmp"]
        steps += [f"mkdir -p {shlex.quote(path)} && mount --move /mnt/{i} {shlex.quote(path)}"
                  for i, path in enumerate(keep)]
        steps += ["mkdir -p \"$D\"", "printf '%s\\n' \"$S\" > \"$D/block.sh\""]
        steps += [f"mount -t tmpfs tmpfs {shlex.quote(path)}" for path in hide]
        steps += [f"printf '127.0.0.1 localhost h{host}\\n' > /tmp/hosts", "mount --bind /tmp/hosts /etc/hosts",
                  f"hostname h{host}", "exec bash \"$D/block.sh\""]
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(host), "unshare", "--uts", "--mount", "sh", "-c", "; ".join(steps)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.workers.setdefault(f"h{host}", []).append(process)
        return process

    def kill_worker(self, host: int) -> None:
        """SIGKILL every process of host ``host``'s workers (a crashed node)."""
        for p in self.workers.get(f"h{host}", []):
            _kill_group(p)

    def cut(self, host: int) -> None:
        """Partition host ``host`` from the manager: its link goes down, its processes keep running."""
        run("ip", "link", "set", self.veth(host), "down")

    def mend(self, host: int) -> None:
        run("ip", "link", "set", self.veth(host), "up")


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)
