"""The worker program's entry point: ``python pwq_worker.pyz VERB ...`` (see ``parsl_wq.worker``)."""

import os
import sys


def main(argv):
    program = os.path.abspath(argv[0])
    verb, arguments = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if verb == "run" and len(arguments) == 2:
        return run(*arguments)
    if verb == "warm" and len(arguments) == 1:
        from . import runner        # loaded already, with the host
        from .caller import main as call
        runner.finish(call(*arguments))     # at once: Work Queue has the result when this process ends
    if verb == "packed" and len(arguments) == 1:
        from .host import serve_handed
        leave_program_path(program)
        return serve_handed(int(arguments[0]), program)
    sys.stderr.write("usage: python %s run CALLS RESULTS | warm FOLDER | packed FD\n"
                     % argv[0])
    return 2


def run(calls_file, results_file):
    """A cold task: run the calls, then exit at once (``runner.finish``), whatever threads the apps left."""
    from ..protocol.sandbox import CALLS_ID, EXIT_RUNNER_FAILED
    from . import runner
    sys.path[0] = os.getcwd()   # the sandbox, as for a script run there: apps import the task's files
    identity = os.environ.pop(CALLS_ID, None)
    try:
        status = runner.main(calls_file, results_file, identity)
    except BaseException:   # a bug in the runner: say so, and still leave at once
        import traceback
        traceback.print_exc()
        status = EXIT_RUNNER_FAILED
    runner.finish(status)


def leave_program_path(program):
    """Take the worker program off ``sys.path`` once its modules are loaded: its names must not shadow the apps'."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p) != program]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
