"""What runs on the worker node: the runner of a task's apps, and the warm host (standard library only).

The executor ships these modules with ``parsl_wq.protocol`` as one file, the
worker program ``pwq_worker.pyz`` (``parsl_wq.client.worker_program``), so a
worker node needs a Python 3 but not this package::

    python pwq_worker.pyz run CALLS RESULTS   a cold task's apps (runner.py)
    . ./pwq_call.sh                           a warm task: its shell's call to the worker's warm host
                                              (call.sh, door.py)
    python pwq_worker.pyz warm FOLDER         the same where no warm host answers: fork one, which serves
                                              until the worker ends (caller.py, supervisor.py)
    python pwq_worker.pyz packed FD           a packed environment's warm host (host.py, packed.py)

Nothing here imports Parsl or ``parsl_wq.client``: ``tests/test_layout.py`` checks it.
"""
