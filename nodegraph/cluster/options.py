"""What the cluster executor is asked for: where the cluster is and what each worker holds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import NodegraphError

__all__ = ["ClusterOptions", "ClusterUnavailable"]


class ClusterUnavailable(NodegraphError):
    """The cluster executor cannot run: Ray missing, cluster unreachable, authentication off, no worker."""


class ClusterOptions(BaseModel):
    """Flags of ``--executor ray`` (``--ray-address``, ``--workers``, ``--worker-gpus``, ``--worker-cpus``)."""

    model_config = ConfigDict(frozen=True)

    address: str | None = Field(None, description="None: start a local Ray instance on loopback, sized to this "
                                "machine; 'auto' or 'HOST:PORT': join a running cluster (`ray start`).")
    workers: int | None = Field(None, ge=1, description="Workers to start (default: one per GPU of the cluster, "
                                "else one per `worker_cpus` CPUs).")
    worker_gpus: float | None = Field(None, ge=0, description="GPUs each worker asks for (default: 1 when the "
                                      "cluster has GPUs, else 0).")
    worker_cpus: float | None = Field(None, gt=0, description="CPUs each worker asks for (default 1); a CPU "
                                      "worker runs torch with that many threads.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local instance (default: the machine's).")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of a local instance (default: detected).")
    object_store_bytes: int | None = Field(None, ge=78 * 1024 * 1024,
                                           description="Object store of a local instance (default: Ray's).")
    worker_settings: dict[str, Any] = Field(
        default_factory=dict, description="Settings every worker applies over its own environment's (e.g. "
        "`model_dirs` from --models-dir: those paths must then exist on every node).")
    start_timeout: float = Field(120.0, gt=0, description="Seconds to wait for the workers to start "
                                 "(then the pool goes on with those that did).")
    max_replacements: int = Field(8, ge=0, description="Lost workers replaced in the life of the pool.")
