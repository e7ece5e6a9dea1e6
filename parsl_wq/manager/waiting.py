"""A ``queue.wait`` that also returns as soon as the executor sends a message: a doorbell.

Work Queue's ``wait(timeout)`` returns when a task finishes or when the
timeout (whole seconds) has passed. While only long tasks run, a task the
executor submits meanwhile would reach the queue up to a second late; with a
shorter timeout ``wait`` does not poll at all (``wait(0)`` returns at once
on both engines).

Work Queue's C library has the call its own foremen use for this:
``work_queue_wait_internal(q, timeout, uplink, &active, tag)`` polls one
extra link together with the workers' links and returns after one pass of
its loop, so it comes back on a worker's message, a finished task, or data
on the uplink, whichever is first. The Python module does not wrap it, so it
is called here through ``ctypes`` in the extension module that is already
loaded (the same library, the same queue). The uplink is a doorbell: a TCP
connection on 127.0.0.1 (Work Queue asks a foreman's uplink for its peer
address when it reports to a catalog, so it must be a socket) whose write
end both the executor and the manager hold. The executor rings it after each
message; the manager rings it after submitting tasks, because a pass that
found nothing to do leaves Work Queue to poll for up to a second at the
start of the next one, before it sends anything.

Both builds this package supports export the two symbols; on a build that
does not, ``ChannelWait`` falls back to ``queue.wait`` and says so in the log.
"""

import ctypes
import os
import sys
from types import ModuleType
from typing import Callable, Dict, Optional, Tuple

EXTENSION_NAMES = ("_work_queue", "_cwork_queue")   # Debian's 9.9, cctools 7.x
FALLBACK_SECONDS = 1    # Work Queue's shortest wait that polls


class ChannelWait:
    """``wait(timeout)``: the next finished task, or None once the doorbell rang or the timeout passed.

    ``doorbell`` is the (read, write) file descriptors of the doorbell. Every
    task given to ``queue.submit`` must also be given to ``submitted``, so
    that the Python task object can be found from the C pointer.
    """

    def __init__(self, wq: ModuleType, queue, doorbell: Tuple[int, int], reports_to_catalog: bool = False):
        self.queue = queue
        self.bell_r, self.bell_w = doorbell
        os.set_blocking(self.bell_r, False)
        self.tasks: Dict[int, object] = {}     # address of the C task -> the Python task
        self.fallback_reason: Optional[str] = None
        if reports_to_catalog:
            # With an uplink, Work Queue describes itself to the catalog as a foreman (its uplink's
            # address, its disk counted twice), and workers looking up the project name no longer
            # find it (cctools 7.17.1, tests/test_catalog_and_factory.py).
            self.fallback_reason = "the manager reports to a catalog (project_name)"
            return
        try:
            library = ctypes.CDLL(_extension_path(wq))
            self._wait = library.work_queue_wait_internal
            attach = library.link_attach_to_fd
        except (OSError, AttributeError, LookupError) as e:
            self.fallback_reason = f"{type(e).__name__}: {e}"
            return
        self._wait.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                               ctypes.POINTER(ctypes.c_int), ctypes.c_char_p]
        self._wait.restype = ctypes.c_void_p
        attach.argtypes = [ctypes.c_int]
        attach.restype = ctypes.c_void_p
        self._uplink = attach(self.bell_r)
        self._queue_pointer = _pointer(queue._work_queue)

    def submitted(self, task) -> None:
        self.tasks[_address(task)] = task

    def forget(self, task) -> None:
        """A task taken out of the queue (``cancel_by_taskid``) without ``wait`` returning it."""
        self.tasks.pop(_address(task), None)

    def ring(self) -> None:
        """Make the next ``wait`` start with a pass that does not poll, so that it sends new tasks at once."""
        os.write(self.bell_w, b"!")

    def wait(self, timeout: int):
        try:
            return self._wait_once(timeout)
        finally:
            self._drain()

    def _wait_once(self, timeout: int):
        if self.fallback_reason is not None:
            task = self.queue.wait(min(timeout, FALLBACK_SECONDS))
            if task is not None:
                self.tasks.pop(_address(task), None)
            return task
        active = ctypes.c_int(0)
        pointer = self._wait(self._queue_pointer, timeout, self._uplink, ctypes.byref(active), None)
        if not pointer:
            return None
        task = self.tasks.pop(pointer)
        del self.queue._task_table[task.id]     # as the module's own wait() does
        return task

    def _drain(self) -> None:
        try:
            while os.read(self.bell_r, 4096):
                pass
        except BlockingIOError:
            pass


def catalog_reporter(wq: ModuleType, queue) -> Optional[Callable[[], None]]:
    """A call that has Work Queue report to its catalog now, or None where the library does not export one.

    Work Queue reports to the catalog at its first wait, then every 60 s
    (``update_catalog(q, uplink, force)``, exported by both builds this package
    supports): apps that come in a burst after that first report stay unknown
    to a factory, which reads its demand there, for up to a minute.
    """
    try:
        update = ctypes.CDLL(_extension_path(wq)).update_catalog
    except (OSError, AttributeError, LookupError):
        return None
    update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    update.restype = None
    pointer = _pointer(queue._work_queue)
    return lambda: update(pointer, None, 1)


def _address(task) -> int:
    return _pointer(task._task)


def _pointer(swig_object) -> int:
    """The C address behind a SWIG object (a proxy class holds its pointer in ``this``)."""
    return int(getattr(swig_object, "this", swig_object))


def _extension_path(wq: ModuleType) -> str:
    """The file of the C extension behind the Work Queue module ``wq``."""
    package = wq.__name__.rpartition(".")[0]
    for name in EXTENSION_NAMES:
        module = sys.modules.get(f"{package}.{name}" if package else name)
        if module is not None and getattr(module, "__file__", None):
            return module.__file__
    raise LookupError(f"no loaded extension module named {' or '.join(EXTENSION_NAMES)} beside {wq.__name__}")
