"""Apps for tests/test_warm.py, imported by reference on the workers."""

from parsl import python_app

ONE_CORE = {"cores": 1, "memory": 200, "disk": 100}


@python_app
def use_probe(parsl_resource_specification=ONE_CORE):
    import os

    import warm_probe
    return os.getpid(), warm_probe.IMPORTED_IN


@python_app
def use_probe_after(seconds, probe=True, parsl_resource_specification=ONE_CORE):
    """``use_probe`` (or not) after a pause: (pid, where warm_probe was imported or None, when this process was
    forked, when the app ended), both times in seconds since the machine booted (the first to 10 ms)."""
    import os
    import time
    time.sleep(seconds)
    imported_in = None
    if probe:
        import warm_probe
        imported_in = warm_probe.IMPORTED_IN
    with open("/proc/self/stat") as f:
        forked = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return os.getpid(), imported_in, forked, time.clock_gettime(time.CLOCK_BOOTTIME)


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


@python_app
def start_state(parsl_resource_specification=ONE_CORE):
    """What only a Python's start and the shell before it decide: the hash seed, bytecode writing, the loader's
    path as the process began, a variable that init_command exported, and one the shell may set."""
    import os
    import sys
    with open("/proc/self/environ", "rb") as f:     # the environment this process (or the one it forked from) had
        started_with = dict(entry.split(b"=", 1) for entry in f.read().split(b"\0") if b"=" in entry)
    return {"hash": hash("parsl_wq"), "dont_write_bytecode": sys.flags.dont_write_bytecode,
            "ld_library_path": started_with.get(b"LD_LIBRARY_PATH", b"").decode(),
            "init_mark": os.environ.get("PWQ_INIT_MARK"), "shlvl": os.environ.get("SHLVL")}


@python_app
def host_identity(parsl_resource_specification=ONE_CORE):
    """The app's process, its parent's command line and the parent's working folder."""
    import os
    parent = os.getppid()
    with open(f"/proc/{parent}/cmdline", "rb") as f:
        cmdline = f.read().split(b"\0")
    return os.getpid(), parent, [c.decode() for c in cmdline if c], os.readlink(f"/proc/{parent}/cwd")


@python_app
def file_mode(parsl_resource_specification=ONE_CORE):
    """The mode a file the app creates gets: what the task's umask leaves of 0666."""
    import os
    import stat
    with open("pwq_mode_probe", "w"):
        pass
    return stat.S_IMODE(os.stat("pwq_mode_probe").st_mode)
