"""parsl-perf config: Parsl's HighThroughputExecutor, 2 workers on this machine (benchmarks/bundling.py)."""
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

config = Config(executors=[HighThroughputExecutor(address="127.0.0.1", max_workers_per_node=2,
                                                  provider=LocalProvider(init_blocks=1, max_blocks=1))])
