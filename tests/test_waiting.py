"""The manager hands a new task to Work Queue while another runs, without waiting for ``wait`` to time out.

The manager runs in a thread of the test process with a real queue, a real
worker and a wait timeout of an hour. A task submitted while a long one runs
must start while the long one still runs, and the long one gives up after
half a second: Work Queue's own wait (a whole second at least), or a pass
that polls for a second before it sends the new task, would come too late.
"""

import os
import subprocess
import threading

from parsl_wq.engine import load_work_queue
from parsl_wq.manager.manager import Manager
from parsl_wq.manager.queue import create_queue
from parsl_wq.client.manager_process import doorbell
from parsl_wq.protocol.channel import Channel
from parsl_wq.protocol.messages import ManagerConfig, Stop, SubmitTask, TaskDone
from parsl_wq.protocol.sandbox import Call

from conftest import wait_until

HOUR = 3600


def test_a_task_submitted_while_another_runs_starts_before_it_ends(tmp_path, no_leftover_workers):
    wq = load_work_queue()
    queue, _ = create_queue(wq, ManagerConfig(port=0, log_dir=str(tmp_path), debug_log=False))
    to_manager_r, to_manager_w = os.pipe()
    from_manager_r, from_manager_w = os.pipe()
    bell_r, bell_w = doorbell()
    executor_side = Channel(from_manager_r, to_manager_w)

    def send(message):      # as ManagerProcess.send does
        executor_side.send(message)
        os.write(bell_w, b"!")
    config = ManagerConfig(port=0, log_dir=str(tmp_path), task_dir=str(tmp_path))
    manager = Manager(wq, queue, Channel(to_manager_r, from_manager_w), config, (bell_r, os.dup(bell_w)),
                      wait_seconds=HOUR)
    serving = threading.Thread(target=manager.serve, daemon=True)
    serving.start()
    worker = subprocess.Popen(["work_queue_worker", "--cores", "2", "--single-shot", "--timeout", "60",
                               "127.0.0.1", str(queue.port)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started, mark = tmp_path / "started", tmp_path / "mark"
    try:
        # The long task runs until the short one has run, or gives up (exit 1) after half a second.
        send(SubmitTask(1, f"touch {started}; for i in $(seq 10); do [ -e {mark} ] && exit 0; "
                           f"sleep 0.05; done; exit 1", "long", (), (), Call(1, "fn", b"", [], []), {"cores": 1}))
        wait_until(started.exists, timeout=60, interval=0.01)
        send(SubmitTask(2, f"touch {mark}", "short", (), (), Call(2, "fn", b"", [], []), {"cores": 1}))
        done = []
        while len(done) < 2:
            done += [m for m in executor_side.receive(timeout=60) if isinstance(m, TaskDone)]
        assert [(d.task_id, d.exit_code) for d in done] == [(2, 0), (1, 0)]
    finally:
        send(Stop())
        serving.join(timeout=30)
        worker.kill()
        worker.wait()
    assert not serving.is_alive()
