"""Parsl monitoring's node table for Work Queue workers, which ``parsl-visualize``'s efficiency plots read.

HTEX sends a NODE_INFO record when a worker pool registers and when it is
lost; here the same happens for each Work Queue worker, from the joins and
departures the manager reads in Work Queue's transactions log
(``parsl_wq.manager.queue_state``): one row when a worker joins with its resources
(``active`` True), one when it leaves (False). A Work Queue worker is a node
with ``cpu_count`` cores and as many worker slots.
"""

import datetime
from typing import Any, Callable, Dict

from parsl.monitoring.message_type import MessageType

from parsl_wq.protocol.messages import QueueState
from parsl_wq.client.usage import MB


class NodeRecords:
    """Sends a NODE_INFO record through ``send`` for each worker that joins or leaves."""

    def __init__(self, run_id: str, send: Callable[[Any], None]):
        self.run_id = run_id
        self.send = send

    def update(self, state: QueueState) -> None:
        now = datetime.datetime.now()
        for worker in state.joined:
            self.send((MessageType.NODE_INFO, self.record(worker, True, now)))
        for worker in state.left:
            self.send((MessageType.NODE_INFO, self.record(worker, False, now)))

    def record(self, worker: Dict[str, Any], active: bool, now: datetime.datetime) -> Dict[str, Any]:
        cores = int(worker.get("cores", 0))
        return {"run_id": self.run_id, "hostname": worker["address"], "uid": worker["id"],
                "block_id": "", "cpu_count": cores, "total_memory": int(worker.get("memory", 0)) * MB,
                "active": active, "worker_count": cores, "python_v": "", "timestamp": now,
                "last_heartbeat": now}
