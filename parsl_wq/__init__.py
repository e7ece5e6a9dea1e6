"""parsl_wq: run Parsl apps on Work Queue workers.

``WorkQueueExecutor`` is imported on first use, so that the manager process,
which imports ``parsl_wq.manager.manager``, does not pay for importing Parsl.
"""

__version__ = "0.1.0"

_LAZY = {
    "WorkQueueExecutor": "parsl_wq.client.executor",
    "WorkerFactory": "parsl_wq.client.factory",
    "InvalidResourceSpecification": "parsl_wq.errors",
    "ExecutorBroken": "parsl_wq.errors",
    "ExecutorShutdown": "parsl_wq.errors",
    "TaskFailure": "parsl_wq.errors",
    "ResourceExhausted": "parsl_wq.errors",
    "TaskUsage": "parsl_wq.protocol.messages",
    "resource_usage": "parsl_wq.client.usage",
    "RemoteException": "parsl_wq.errors",
    "AppBaseException": "parsl_wq.errors",
    "AppCrashed": "parsl_wq.errors",
    "InputMissing": "parsl_wq.errors",
    "SerializationFailed": "parsl_wq.errors",
    "ResultUnreadable": "parsl_wq.errors",
    "EngineNotFound": "parsl_wq.errors",
    "ConfigurationError": "parsl_wq.errors",
}

__all__ = list(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'parsl_wq' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(module), name)
