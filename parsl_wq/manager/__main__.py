"""The manager process: owns the Work Queue queue and nothing else.

Started by the executor (``parsl_wq.client.manager_process``) as::

    python -m parsl_wq.manager TO_MANAGER FROM_MANAGER BELL_READ BELL_WRITE

four inherited descriptors: the read end of the pipe the executor writes
messages to, the write end of the pipe it reads from, and both ends of the
doorbell, a TCP connection on 127.0.0.1 that the executor rings after each
message (``parsl_wq.manager.waiting``). It imports Work Queue before it reads
the first message, the ``ManagerConfig``, which the executor prepares
meanwhile; it answers ``Ready(port)`` or ``StartFailed``, then serves
(``parsl_wq.manager.manager``).

Work Queue's ``wait`` holds the GIL for up to a second, so the queue lives in
a process of its own. This package imports only the standard library and
Work Queue (``tests/test_layout.py`` checks it): the process is ready in
about 0.2 s (``python -c "import parsl_wq.manager.__main__, parsl_wq.engine as
e; e.load_work_queue()"``, docs/design.md), most of it importing Work Queue's
own module; importing Parsl would add about half a second.
"""

import sys

from parsl_wq.engine import load_work_queue
from parsl_wq.manager.manager import Manager
from parsl_wq.manager.queue import create_queue
from parsl_wq.protocol.channel import Channel
from parsl_wq.protocol.messages import ManagerConfig, Ready, StartFailed


def main(argv) -> int:
    channel = Channel(int(argv[1]), int(argv[2]))
    doorbell = (int(argv[3]), int(argv[4]))
    failure = None
    try:
        wq = load_work_queue()      # while the executor prepares the config
    except Exception as e:
        failure = f"{type(e).__name__}: {e}"
    try:
        (config,) = channel.receive()
    except EOFError:
        return 1
    if not isinstance(config, ManagerConfig):     # Stop: the executor's start failed before it had a config
        return 1
    if failure is None:
        try:
            queue, monitor_binary = create_queue(wq, config)
        except Exception as e:
            failure = f"{type(e).__name__}: {e}"
    if failure is not None:
        channel.send(StartFailed(failure))
        return 1
    channel.send(Ready(queue.port))
    channel.hold_output()       # a large result must not stop the manager serving workers while it travels
    manager = Manager(wq, queue, channel, config, doorbell, monitor_binary)
    if manager.waiting.fallback_reason:
        print(f"a task submitted while others run can reach Work Queue up to a second late: "
              f"{manager.waiting.fallback_reason}", file=sys.stderr, flush=True)
    stopped = False
    try:
        stopped = manager.serve()
    finally:
        manager.close(orphaned=not stopped)
        try:
            channel.drain()
        except OSError:     # the executor is gone
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
