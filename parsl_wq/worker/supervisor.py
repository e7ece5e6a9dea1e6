"""The warm program's first process: a Work Queue coprocess that keeps a warm host running.

Started by ``work_queue_worker --coprocess LAUNCHER`` (cctools 7.x), once per
coprocess slot (one per core by default), in the worker's workspace; the
launcher runs ``python pwq_worker.pyz warm``. The whole picture is in
``parsl_wq.worker.host``.

1. It binds 127.0.0.1:PORT and announces ``{"name", "port"}`` to the worker
   (a length line, then JSON, as Work Queue's coprocess protocol asks).
2. It forks the host, which accepts the worker's connections on that port.
3. A host that dies (killed, out of memory) is replaced after RESTART_PAUSE;
   the call it was serving gets no answer, which the manager reports as a
   lost warm process. Work Queue 7.17 never restarts a coprocess itself.
4. When the worker closes the supervisor's stdin or is gone, it stops the
   host and its apps and exits: nothing outlives the worker.
"""

import json
import os
import select
import socket
import sys
import time

from ..protocol.warm import NAME
from .host import Host
from .processes import die_with_parent, stop_group

RESTART_PAUSE = 0.5          # seconds between a host's death and its replacement


def main(program):
    """Serve until the worker is gone; ``program`` is the path of the worker program, for packed hosts."""
    die_with_parent()
    parent = os.getppid()
    listener = socket.create_server(("127.0.0.1", 0))
    announce(listener.getsockname()[1])
    host = None
    while True:
        if host is None:
            host = start_host(listener, program)
        readable, _, _ = select.select([sys.stdin.fileno()], [], [], 1.0)
        if (readable and not os.read(sys.stdin.fileno(), 1)) or os.getppid() != parent:     # the worker is gone
            stop_group(host)
            return 0
        ended, status = os.waitpid(host, os.WNOHANG)
        if ended:
            sys.stderr.write("parsl_wq warm host %d ended (status %d); starting another\n" % (host, status))
            host = None
            time.sleep(RESTART_PAUSE)


def announce(port):
    message = json.dumps({"name": NAME, "port": port})
    sys.stdout.write("%d\n%s" % (len(message), message))
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())       # the worker reads nothing more from this pipe
    os.close(devnull)


def start_host(listener, program):
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setpgid(0, 0)
        die_with_parent()
        Host(listener, os.getcwd(), program).serve_forever()
    finally:
        os._exit(1)
