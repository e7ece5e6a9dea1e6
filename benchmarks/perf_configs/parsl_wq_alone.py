"""parsl-perf config: parsl_wq with one local worker, each app its own task (benchmarks/bundling.py)."""
from parsl.config import Config

from parsl_wq import WorkQueueExecutor

config = Config(executors=[WorkQueueExecutor(port=0, max_bundle=1)])
