"""What crosses a process: the payloads, names and codes that two places of parsl_wq share.

Standard library only: the user's process (``parsl_wq.client``), the manager
process (``parsl_wq.manager``) and the worker node (``parsl_wq.worker``) all
import it. Each payload is a named type whose fields are documented once, in
the module of the boundary it crosses:

=================  ==========================  ============================================
module             between                     what
=================  ==========================  ============================================
``messages``       executor <-> manager        ``ManagerConfig``, ``SubmitTask``,
                                               ``TaskDone``, ``QueueState``, ...
``channel``        executor <-> manager        how those messages are framed
``results``        manager -> executor         the names of a task's results
``sandbox``        manager <-> worker          the files in a task's sandbox: the calls
                                               file (``Call``), the results file, exit codes
``warm``           manager <-> warm host       a warm task's call (``WarmCall``) and the
                                               host's answer (``WarmAnswer``)
=================  ==========================  ============================================

``sandbox`` and ``warm`` run on the worker too, from the worker program that
the executor builds (``parsl_wq.client.worker_program``): they import nothing
beyond the standard library modules a Python has loaded at start.
"""
