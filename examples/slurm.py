"""Workers as Slurm jobs: each block is a job whose worker offers what the job was given.

``cores_per_node`` and ``mem_per_node`` (GB) ask Slurm for a node's share and
also become the worker's ``--cores`` and ``--memory``, so Work Queue packs apps
into exactly what the job holds. Run on a Slurm login node:

    python examples/slurm.py --partition debug

Workers must reach this machine's port: the address is this host's name. The
run's password file is in the run directory, which the jobs must see (a shared
file system), or pass ``project_password_file``.
"""

import argparse

import parsl
from parsl import python_app
from parsl.config import Config
from parsl.providers import SlurmProvider

from parsl_wq import WorkQueueExecutor


@python_app
def simulate(seed, parsl_resource_specification={"cores": 1, "memory": 500}):
    import random
    random.seed(seed)
    return sum(random.random() for _ in range(1_000_000))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--nodes", type=int, default=2, help="blocks (jobs) at most")
    args = parser.parse_args()
    provider = SlurmProvider(partition=args.partition, cores_per_node=4, mem_per_node=8, nodes_per_block=1,
                             init_blocks=1, max_blocks=args.nodes, walltime="00:30:00")
    executor = WorkQueueExecutor(port=0, provider=provider, progress=True)
    with parsl.load(Config(executors=[executor], run_dir="runinfo")):
        totals = [f.result() for f in [simulate(i) for i in range(40)]]
        print(f"{len(totals)} simulations, mean {sum(totals) / len(totals):.1f}")


if __name__ == "__main__":
    main()
