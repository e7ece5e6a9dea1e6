"""Parsl's own test suite with parsl_wq: local cold workers (coprocess=False), no shared filesystem."""

from parsl.config import Config

from parsl_wq import WorkQueueExecutor


def fresh_config():
    return Config(executors=[WorkQueueExecutor(port=0, shared_fs=False, coprocess=False)])
