"""What runs in the user's process: the executor Parsl calls, and what it starts and talks to.

``executor`` is the Parsl-facing shell; ``config`` checks its parameters and
gives each part of the run its view of them; ``tasks``, ``files`` and
``serialize`` turn an app invocation into a task; ``manager_process`` starts
the manager process and talks to it; ``collector`` resolves each app's future
from what it reports (with ``outcomes``); ``workers``, ``security``,
``joining`` and ``factory`` bring workers in; ``worker_program`` builds what
they run. ``usage``, ``run_status``, ``progress`` and ``nodes`` tell the user
what happened.
"""
