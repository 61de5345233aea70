"""Workers with warm models for an asyncio caller: one core, and backends that run the workers.

`core` queues, limits and tracks jobs whatever runs them; `backend` is what a backend must offer;
`local` runs workers as processes on this machine (the default); `ray` as Ray actors on a cluster
(imported only when `PoolConfig.ray_address` is set).
"""

from __future__ import annotations

from .backend import Backend, WorkerEvents, WorkerHandle
from .core import (
    DreamPool,
    Job,
    JobEvent,
    JobFailed,
    JobFinished,
    JobProgress,
    JobQueued,
    JobStarted,
    PoolConfig,
    PoolStats,
)

__all__ = [
    "Backend",
    "DreamPool",
    "Job",
    "JobEvent",
    "JobFailed",
    "JobFinished",
    "JobProgress",
    "JobQueued",
    "JobStarted",
    "PoolConfig",
    "PoolStats",
    "WorkerEvents",
    "WorkerHandle",
]
