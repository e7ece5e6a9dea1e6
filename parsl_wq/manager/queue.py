"""The manager's Work Queue queue: created from the ``ManagerConfig``, and what its tasks' results mean.

Runs inside the manager process: standard library and Work Queue only.
"""

import os
from types import ModuleType

from parsl_wq.manager import monitor
from parsl_wq.protocol.messages import ManagerConfig


def create_queue(wq: ModuleType, config: ManagerConfig):
    """The configured queue, and the resource monitor binary each task must carry (or None)."""
    debug_log = os.path.join(config.log_dir, "debug.log") if config.debug_log else None
    tls = {"ssl": config.ssl} if config.ssl else {}    # builds without TLS have no ssl parameter
    queue = wq.WorkQueue(config.port, debug_log=debug_log,
                         stats_log=os.path.join(config.log_dir, "stats.log"),
                         transactions_log=os.path.join(config.log_dir, "transactions.log"), **tls)
    if config.catalog:
        host, port = config.catalog.rsplit(":", 1)
        queue.specify_catalog_server(host, int(port))
    if config.project_name:
        queue.specify_name(config.project_name)
    if config.keepalive_interval is not None:
        queue.specify_keepalive_interval(config.keepalive_interval)
    if config.keepalive_timeout is not None:
        queue.specify_keepalive_timeout(config.keepalive_timeout)
    if config.password_file:
        queue.specify_password_file(config.password_file)
    monitor_binary = None
    if config.monitor and not config.warm:      # a warm host measures its apps itself
        if config.monitor_interval is not None:
            monitor_binary = monitor.sample_every(config.monitor_interval, config.log_dir)
        queue.enable_monitoring(watchdog=True)
    if config.allocation_mode != "fixed" and hasattr(wq, "cctools_version_string"):
        # cctools 7.x (not Debian's 2021 build, which has no such setting) raises every
        # value of a task's allocation to the worker share of its largest resource
        # (work_queue.c task_worker_box_size, "proportional-resources", on by default):
        # a learned label {cores: 1, memory: 250} on a 2-core, 2000 MB worker becomes
        # 1000 MB, and a declared memory limit is raised the same way and not enforced.
        # Learning categories label every resource, so nothing needs the proportions.
        queue.tune("proportional-resources", 0)
    if config.autolabel_window is not None:
        queue.tune("category-steady-n-tasks", config.autolabel_window)
    return queue, monitor_binary


def not_started(wq: ModuleType, task) -> bool:
    """Whether the worker gave up the task before starting its command: no app ran.

    A worker that cannot link an input into the task's sandbox (a file missing
    from its cache, or a stale ``t.N`` in a workspace that a killed worker with
    the same process id left) reports INPUT_MISSING, exit status 1, no output
    and no execution time; the manager, not finding the results file, then
    turns INPUT_MISSING into OUTPUT_MISSING (cctools 7.17, ``update_task_result``).
    An input missing on the submit side has exit status -1: the task was never
    sent. Any command that ran took some microseconds.
    """
    return (task.result in (wq.WORK_QUEUE_RESULT_INPUT_MISSING, wq.WORK_QUEUE_RESULT_OUTPUT_MISSING)
            and task.return_status == 1 and not task.output and task._task.time_workers_execute_last == 0)
