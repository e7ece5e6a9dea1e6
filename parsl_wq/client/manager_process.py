"""The manager process as the executor sees it: start it, talk to it, stop it.

The process runs ``python -m parsl_wq.manager TO_MANAGER FROM_MANAGER BELL_READ BELL_WRITE``
(see ``parsl_wq.manager.__main__``) in a session of its own, so that a Ctrl-C in the user's
terminal reaches the user's process only; its output goes to ``manager.log``.
Messages travel over a pipe each way. After each message the executor rings a
doorbell, a TCP connection on 127.0.0.1 that the manager's Work Queue polls
together with the workers (``parsl_wq.manager.waiting``).
"""

import os
import socket
import subprocess
import sys
import threading
from typing import Any, List, Optional, Tuple, Union

from parsl_wq.errors import ExecutorBroken
from parsl_wq.protocol.channel import Channel
from parsl_wq.client.outcomes import LOW_DISK
from parsl_wq.protocol.messages import ManagerConfig, Ready, Stop, amount

START_TIMEOUT = 60      # seconds for the manager process to report its port
STOP_TIMEOUT = 10       # seconds for the manager process to exit once told to stop
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ManagerProcess:
    def __init__(self, label: str, log_dir: str):
        self.label = label
        self.log_path = os.path.join(log_dir, "manager.log")
        self.process: Optional[subprocess.Popen] = None
        self.channel: Optional[Channel] = None
        self._send_lock = threading.Lock()
        self._stopped = False

    def spawn(self) -> None:
        """Start the process; it imports Work Queue while the executor prepares the ``ManagerConfig`` for ``start``."""
        to_manager_r, to_manager_w = os.pipe()
        from_manager_r, from_manager_w = os.pipe()
        bell_r, bell_w = doorbell()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        fds = (to_manager_r, from_manager_w, bell_r, bell_w)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "parsl_wq.manager", *map(str, fds)],
                pass_fds=fds, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        for fd in (to_manager_r, from_manager_w, bell_r):
            os.close(fd)
        self.channel = Channel(from_manager_r, to_manager_w)
        self._doorbell = bell_w

    def start(self, config: ManagerConfig) -> int:
        """Hand the spawned process ``config``; returns the port its queue listens on.

        Raises ExecutorBroken, with the manager's reason or the end of its log,
        if it does not report ready within START_TIMEOUT seconds.
        """
        self.channel.send(config)
        try:
            replies = self.channel.receive(timeout=START_TIMEOUT)
        except EOFError:
            replies = []
        if not replies or not isinstance(replies[0], Ready):
            reason = getattr(replies[0], "reason", None) if replies else None
            self.stop()
            raise ExecutorBroken(self.label, "the Work Queue manager did not start: " + (reason or self.log_tail()))
        return replies[0].port

    def send(self, message: Any) -> None:
        """Send one message, and ring the doorbell; safe from several threads. Raises OSError if the process is gone."""
        with self._send_lock:
            self.channel.send(message)
            os.write(self._doorbell, b"!")

    def receive(self) -> List[Any]:
        """Block until messages arrive. Raises EOFError once the process has closed its end."""
        return self.channel.receive()

    def exit_code(self, timeout: float) -> Union[int, str]:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return "none yet: it closed its channel but is still running"

    def stop(self) -> None:
        """Tell the process to stop; kill it if it has not exited within STOP_TIMEOUT seconds."""
        if self.process is None or self._stopped:
            return
        try:
            self.send(Stop())
        except OSError:
            pass
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self.channel.write_fd, self._doorbell):
            try:
                os.close(fd)
            except OSError:
                pass
        self._stopped = True    # a second stop does nothing: the descriptors' numbers may be in use again

    def disk_note(self) -> str:
        """A word on the run's disk if it is full: Work Queue 7.17.1's manager crashes (SIGSEGV) when it cannot
        write a task's result there (``tests/test_extras.py``)."""
        folder = os.path.dirname(self.log_path)
        try:
            space = os.statvfs(folder)
        except OSError:
            return ""
        free = space.f_bavail * space.f_frsize
        if free >= LOW_DISK:
            return ""
        return (f"\nThe submit side's disk is full where the task's outputs and result are written: {folder} "
                f"({amount('disk', free / 1e6)} free); Work Queue's manager may have failed to write there")

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:]).strip() or "(manager.log is empty)"
        except OSError as e:
            return f"(no manager.log: {e})"


def doorbell() -> Tuple[int, int]:
    """File descriptors of the two ends of a new TCP connection on 127.0.0.1: (read end, write end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        writer = socket.create_connection(listener.getsockname(), timeout=START_TIMEOUT)
        writer.settimeout(None)
        writer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)    # a ring is one byte: send it now
        while True:     # another local process could connect first: take only our own connection
            reader, peer = listener.accept()
            if peer == writer.getsockname():
                break
            reader.close()
    return reader.detach(), writer.detach()
