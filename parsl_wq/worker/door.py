"""How a warm task's shell reaches its worker's warm host: the supervisor's door, and the calls that come in.

The supervisor holds two pipes and a file open (``Door``):

    CALLS   each task's shell sends "PID FD SANDBOX" on it, one line (at most PIPE_BUF bytes: one write, never
            mixed with another shell's)
    BLOCK   nobody writes to it; each task's shell waits on it for its answer, and sees the supervisor end
    DOOR    the file ``door`` in the host's folder, "PID CALLS BLOCK DOOR TOKEN": the supervisor's pid and
            these three descriptors, and a token read through DOOR to tell the supervisor from a process
            that took its pid since

A task's shell (``pwq_call.sh``) opens them through ``/proc/PID/fd/N``. The
kernel lets only the supervisor's own user (and root) open another process's
descriptors: no other user on the node can send a call, hold one up, or read
one. Nothing listens on a port.

A ``Call`` is a task's shell that sent its line and waits. The host reads
the call that the shell wrote in its sandbox (``CALL_FILE``: the
``WarmCall``, then the task's TMPDIR, each on a line), writes the
answer, one line, to the shell's descriptor FD, the task's output (a file of
the worker's that Work Queue returns), or where it cannot to
``ANSWER_FILE``, which the shell prints, and sends the shell ``ANSWERED``.
FD is a copy of the shell's stdout that no redirection moves: descriptor 1
points elsewhere while the shell runs a command whose output it redirects,
as the one that sends the line.
The shell's end (Work Queue cancelled the task) is seen on its pidfd.

Standard library only.
"""

import os
import select
import signal

from ..protocol.warm import ANSWER_FILE, ANSWERED, CALL_FILE, decode_call, encode_answer

DOOR = "door"               # in the host's folder
LINE_MAX = 4096             # PIPE_BUF: a longer line is not one write (``pwq_call.sh`` sends none)
CALL_MAX = 1 << 20          # the largest call file read


class Door:
    """The supervisor's pipes and door file (module docstring); ``requests()`` reads the calls that came."""

    def __init__(self, folder):
        self.calls_r, self.calls_w = os.pipe()
        self.block_r, self.block_w = os.pipe()
        self.token = os.urandom(16).hex()      # not ``secrets``: its imports cost a warm worker's first task 9 ms
        self.path = os.path.join(folder, DOOR)
        # Mode 0600 whatever the umask; the supervisor keeps the task's umask, which its apps inherit.
        self.door_fd = os.open(self.path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.write(self.door_fd, b"%d %d %d %d %s\n" % (os.getpid(), self.calls_w, self.block_r, self.door_fd,
                                                       self.token.encode()))
        os.replace(self.path + ".tmp", self.path)
        self.partial = b""

    def fileno(self):
        return self.calls_r

    def descriptors(self):
        return (self.calls_r, self.calls_w, self.block_r, self.block_w, self.door_fd)

    def requests(self):
        """The (pid, fd, sandbox) of each well-formed line that came on CALLS; what is not one is written to stderr."""
        lines = (self.partial + os.read(self.calls_r, 65536)).split(b"\n")
        self.partial = lines.pop()[-LINE_MAX:]
        came = []
        for line in lines:
            request = parse_request(line)
            if request is None:
                os.write(2, b"parsl_wq warm host: refused a request that is not 'PID FD SANDBOX': %r\n" % line[:200])
            else:
                came.append(request)
        return came

    def close_in_fork(self):
        """In a process forked from the supervisor: hold none of the door, so that its end is seen."""
        for fd in self.descriptors():
            os.close(fd)

    def close(self):
        """Remove the door file, if it is still this door's, and close the descriptors: waiting shells see BLOCK
        end."""
        try:
            if os.path.samestat(os.stat(self.path), os.fstat(self.door_fd)):
                os.remove(self.path)
        except OSError:
            pass
        for fd in self.descriptors():
            try:
                os.close(fd)
            except OSError:
                pass


def read_door(folder):
    """(pid, calls, block, door, token) that the folder's supervisor wrote, or None."""
    try:
        with open(os.path.join(folder, DOOR)) as f:
            pid, calls, block, door, token = f.read().split()
        return int(pid), int(calls), int(block), int(door), token
    except (OSError, ValueError):
        return None


def door_open(folder):
    """The door's (pid, calls, block) if its supervisor runs and holds it (as ``pwq_call.sh`` checks), else None."""
    door = read_door(folder)
    if door is None:
        return None
    pid, calls, block, fd, token = door
    try:
        with open("/proc/%d/fd/%d" % (pid, fd)) as f:
            if f.read().split()[4:5] != [token]:
                return None
    except (OSError, IndexError):
        return None
    return pid, calls, block


def parse_request(line):
    """(pid, fd, sandbox) from "PID FD SANDBOX", or None if the line is not one."""
    pid, fd, sandbox = (line.decode(errors="replace").split(" ", 2) + ["", ""])[:3]
    if not (pid.isdigit() and fd.isdigit()) or int(pid) <= 1 or not os.path.isabs(sandbox) or "\0" in sandbox:
        return None
    return int(pid), int(fd), sandbox


class Call:
    """A task's shell waiting in its sandbox for the answer to its call (module docstring)."""

    def __init__(self, pid, fd, sandbox, tmpdir=""):
        self.pid = pid
        self.fd = fd            # the shell's copy of its stdout
        self.sandbox = sandbox
        self.tmpdir = tmpdir    # the task's TMPDIR, as Work Queue set it for the task (``read``)
        self.woken = False      # the shell has been sent ANSWERED, here or by the host the call was handed to
        try:
            self.pidfd = os.pidfd_open(pid)     # Linux 5.3; else its end is looked for (``ended``)
        except ProcessLookupError:
            raise
        except (AttributeError, OSError):
            self.pidfd = None

    def fileno(self):
        """A descriptor that becomes readable once the shell has ended, or None (then ask ``ended``)."""
        return self.pidfd

    def ended(self):
        if self.pidfd is not None:
            return bool(select.select([self.pidfd], [], [], 0)[0])
        try:
            with open("/proc/%d/stat" % self.pid, "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")     # dead, not yet reaped
        except (OSError, IndexError):
            return True

    def read(self):
        """The shell's ``WarmCall``, as it wrote it into the sandbox (and its TMPDIR, in ``tmpdir``)."""
        with open(os.path.join(self.sandbox, CALL_FILE), "rb") as f:
            text = f.read(CALL_MAX + 1)
        if len(text) > CALL_MAX:
            raise ValueError("a call of over %d bytes" % CALL_MAX)
        call, _, tmpdir = text.decode().partition("\n")
        self.tmpdir = tmpdir.rstrip("\n")
        return decode_call(call)

    def answer(self, answer):
        """Give the shell its answer, then wake it (woken without one where neither place takes it)."""
        line = (encode_answer(answer) + "\n").encode()
        try:
            try:
                self.write_output(line)
            except OSError:
                path = os.path.join(self.sandbox, ANSWER_FILE)
                with open(path + ".tmp", "wb") as f:
                    f.write(line)
                os.replace(path + ".tmp", path)
        except OSError as e:
            os.write(2, b"parsl_wq warm host: no place for the answer in %r: %r\n" % (self.sandbox[:200], e))
        finally:
            self.wake()

    def write_output(self, line):
        """Append ``line`` to the shell's stdout, which Work Queue returns as the task's output."""
        fd = os.open("/proc/%d/fd/%d" % (self.pid, self.fd), os.O_WRONLY | os.O_APPEND | os.O_NOCTTY)
        try:
            written = os.write(fd, line)
        finally:
            os.close(fd)
        if written != len(line):
            raise OSError("the task's output took %d of %d bytes" % (written, len(line)))

    def wake(self):
        """Send the shell ``ANSWERED``: it prints what it was given (if anything) and exits."""
        self.woken = True
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, ANSWERED)
            else:
                os.kill(self.pid, ANSWERED)
        except OSError:     # it has ended already
            pass

    def close(self):
        """Done with the call. A shell not woken yet is woken without an answer (the manager reports a lost warm
        process): none waits for ever."""
        if not self.woken:
            self.wake()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
