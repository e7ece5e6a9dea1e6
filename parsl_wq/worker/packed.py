"""Warm hosts of packed environments (``pack=True``): one per environment, started with its own Python.

A call that names a packed environment is handed to that environment's host
(``Handed``, on a socketpair), which answers the task's shell itself. The
environment is unpacked once per worker by ``pwq_unpack.sh``, as cold tasks
do, and its host is started again at the next call if it has died.

Standard library only.
"""

import json
import os
import re
import socket
from collections import namedtuple

from ..protocol.sandbox import EXIT_RUNNER_FAILED, EXIT_UNPACK_FAILED, UNPACK_FAILED, UNPACKER
from ..protocol.warm import WarmAnswer

HANDED_MAX = 1 << 20         # the largest call handed to a packed environment's host
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")   # a file's name in one folder: no "/", no ".."

Handed = namedtuple("Handed", ["sandbox", "call", "pid", "fd", "tmpdir"])
Handed.__doc__ = """A call handed to a packed environment's host (JSON): the task's sandbox, the ``WarmCall`` as a
dict, the pid of the task's shell, which waits for the answer, with the descriptor it is written to, and the
task's TMPDIR (``door.Call``)."""


class PackedHosts:
    """The hosts of packed environments, one per environment, each started on the first call that names it."""

    def __init__(self, folder, program):
        self.folder = folder        # the host folder, where packed hosts run
        self.program = program      # the worker program, which a packed host runs with its own Python
        self.hosts = {}     # environment name -> (its process, our end of its socketpair)

    def hand(self, caller, call):
        """Pass the call to its environment's host; None once passed, else the answer."""
        sandbox = caller.sandbox
        name, tarball = call.environment["name"], call.environment["tarball"]
        if not (safe_name(name) and safe_name(tarball)):
            return WarmAnswer(EXIT_RUNNER_FAILED, "parsl_wq warm host: refused the environment %r (tarball %r): "
                              "a name may not hold a path\n" % (name, tarball), {}, {})
        if name not in self.hosts or self.hosts[name][0].poll() is not None:
            folder, output = unpack(sandbox, call.environment)
            if folder is None:
                return WarmAnswer(EXIT_UNPACK_FAILED, output + "\n" + UNPACK_FAILED + "\n", {}, {})
            self.stop(name)
            try:
                self.hosts[name] = self.start(folder)
            except OSError as e:
                return WarmAnswer(EXIT_RUNNER_FAILED, "parsl_wq warm host: the Python of environment %s did not "
                                  "start: %s\n" % (name, e), {}, {})
        message = json.dumps(Handed(sandbox, call._asdict(), caller.pid, caller.fd, caller.tmpdir)._asdict()).encode()
        try:
            self.hosts[name][1].send(message)
        except OSError as e:
            self.stop(name)
            return WarmAnswer(EXIT_RUNNER_FAILED, "parsl_wq warm host: the call could not be handed to the warm "
                              "process of environment %s: %s\n" % (name, e), {}, {})
        return None

    def wait(self, name):
        """Wait until the environment's host has answered the call handed to it (True: it said IDLE), or has
        died (False)."""
        try:
            return bool(self.hosts[name][1].recv(16))
        except OSError:
            return False

    def start(self, folder):
        """Start a host with the Python of the environment unpacked in ``folder``; it gets calls on a socketpair."""
        import subprocess
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, PATH=os.path.join(folder, "bin") + os.pathsep + os.environ.get("PATH", ""))
        process = subprocess.Popen([os.path.join(folder, "bin", "python"), self.program, "packed",
                                    str(theirs.fileno())], pass_fds=[theirs.fileno()], cwd=self.folder,
                                   env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        return process, ours

    def stop(self, name):
        process, channel = self.hosts.pop(name, (None, None))
        if process is not None:
            channel.close()
            process.kill()
            process.wait()


def safe_name(name):
    """Whether ``name`` names a file in one folder: letters, digits, ".", "_", "-", no "/" and no ".."."""
    return isinstance(name, str) and bool(SAFE_NAME.match(name)) and ".." not in name


def receive_handed(channel):
    """The next ``Handed`` call, or None once the first host has closed."""
    message = channel.recv(HANDED_MAX)
    if not message:
        return None
    return Handed(**json.loads(message))


def unpack(sandbox, environment):
    """Unpack a packed environment as a cold task does; its folder, or None and what the unpacker printed."""
    import subprocess       # here, not at the top: the supervisor starts faster without it
    done = subprocess.run(["sh", UNPACKER, environment["tarball"], environment["name"]], cwd=sandbox,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        return None, "\n".join(lines)
    return lines[-1], ""
