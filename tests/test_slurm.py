"""Workers started as Slurm jobs by Parsl's SlurmProvider, on a real single-node Slurm cluster.

Run with ``make test-slurm``: it brings the cluster up with
tools/slurm_cluster.sh, runs this module and brings it down. Without a
cluster (no SLURM_CONF, or sinfo fails) the tests are skipped.
"""

import os
import shutil
import subprocess

import parsl
import pytest
from parsl.config import Config
from parsl.launchers import SingleNodeLauncher
from parsl.providers import SlurmProvider

import apps
from conftest import wait_until, worker_processes
from parsl_wq import WorkQueueExecutor

TIMEOUT = 120


def slurm_is_up() -> bool:
    if not os.environ.get("SLURM_CONF") or shutil.which("sinfo") is None:
        return False
    return subprocess.run(["sinfo"], capture_output=True, timeout=30).returncode == 0


pytestmark = pytest.mark.skipif(not slurm_is_up(), reason="no Slurm cluster: run `make test-slurm`")


def our_jobs():
    out = subprocess.run(["squeue", "--noheader", "--format=%i %j"], capture_output=True, text=True,
                         timeout=30).stdout
    return [line for line in out.splitlines() if "parsl" in line]


@pytest.mark.parametrize("coprocess", [False, True], ids=["cold", "warm"])
def test_workers_run_as_slurm_jobs_and_leave_with_the_executor(tmp_path, coprocess):
    """A block's job script carries the run's password (the node needs no copy of the password file), in a
    private folder; warm, the job's worker runs the apps in forks of its warm host."""
    provider = SlurmProvider(partition="debug", nodes_per_block=1, init_blocks=1, walltime="00:05:00",
                             launcher=SingleNodeLauncher(), cmd_timeout=30, exclusive=False)
    executor = WorkQueueExecutor(port=0, provider=provider, address="127.0.0.1", coprocess=coprocess)
    kernel = parsl.load(Config(executors=[executor], run_dir=str(tmp_path), strategy="none"))
    try:
        job_ids = [apps.read_env("SLURM_JOB_ID").result(timeout=TIMEOUT) for _ in range(3)]
        assert job_ids[0] and set(job_ids) == {job_ids[0]}, job_ids
        assert our_jobs(), "the block is not a Slurm job"
        files = [os.path.join(provider.script_dir, n) for n in os.listdir(provider.script_dir)]
        scripts = [path for path in files if os.path.isfile(path) and open(path).read(2) == "#!"]   # sbatch's
        assert scripts and os.stat(provider.script_dir).st_mode & 0o077 == 0
        with open(executor._secrets.password_file) as f:
            secret = f.read().strip()
        for script in scripts:
            text = open(script).read()
            assert secret in text and executor._secrets.password_file not in text
        parents = {apps.parent_command().result(timeout=TIMEOUT) for _ in range(3)}
        assert all(("pwq_worker.pyz warm" in p) == coprocess for p in parents), parents
    finally:
        kernel.cleanup()
    assert wait_until(lambda: not our_jobs(), timeout=60), our_jobs()
    assert wait_until(lambda: not worker_processes(), timeout=30), worker_processes()
