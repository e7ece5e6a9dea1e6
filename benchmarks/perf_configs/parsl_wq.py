"""parsl-perf config: parsl_wq with one local worker, bundling on (the default) (benchmarks/bundling.py)."""
from parsl.config import Config

from parsl_wq import WorkQueueExecutor

config = Config(executors=[WorkQueueExecutor(port=0)])
