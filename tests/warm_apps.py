"""Apps for tests/test_warm.py, imported by reference on the workers."""

from parsl import python_app

ONE_CORE = {"cores": 1, "memory": 200, "disk": 100}


@python_app
def use_probe(parsl_resource_specification=ONE_CORE):
    import os

    import warm_probe
    return os.getpid(), warm_probe.IMPORTED_IN


@python_app
def change_everything(parsl_resource_specification=ONE_CORE):
    import os
    import sys

    import warm_probe
    warm_probe.STATE.append("changed")
    os.environ["PWQ_CHANGED"] = "yes"
    sys.path.append("/pwq-changed")
    os.chdir("/")
    return "changed"


@python_app
def look_for_changes(parsl_resource_specification=ONE_CORE):
    import os
    import sys

    import warm_probe
    return {"state": warm_probe.STATE, "env": os.environ.get("PWQ_CHANGED"),
            "path": "/pwq-changed" in sys.path, "cwd_is_sandbox": os.path.basename(os.getcwd()).startswith("t.")}


@python_app
def report_then_sleep(marker, seconds, parsl_resource_specification=ONE_CORE):
    import os
    import time
    with open(marker + ".tmp", "w") as f:
        f.write(f"{os.getpid()} {os.getppid()}")
    os.rename(marker + ".tmp", marker)
    time.sleep(seconds)
    return "slept"


@python_app
def parent_pid(parsl_resource_specification=ONE_CORE):
    import os
    return os.getppid()


@python_app
def temporary_folder_and_sandbox(parsl_resource_specification=ONE_CORE):
    import os
    import tempfile

    import warm_probe   # noqa: F401  (imported by the warm process too: tempfile has chosen its folder there)
    return tempfile.gettempdir(), os.getcwd()


@python_app
def task_environment(parsl_resource_specification=ONE_CORE):
    import os
    return {name: os.environ.get(name) for name in ("CORES", "OMP_NUM_THREADS", "MEMORY", "DISK")}
