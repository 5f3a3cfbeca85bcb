"""The processes of a multi-process run (one per host, or several on one machine): who this process
is, which problems are its own, and barriers between the stages of a run.

Problems are assigned by a hash of their id, never by claiming: every process computes the same
assignment from the same inputs, so a process that dies is rerun with the same arguments and finds
its own shard again, and the outputs of N processes merge into the same files for any N.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Callable, Mapping, Sequence, TypeVar

from rstar_jax.errors import UserError

T = TypeVar("T")

# Environment variables that schedulers set; jax.distributed.initialize() reads them itself
# (JAX_COORDINATOR_ADDRESS, SLURM's, Cloud TPU's, Open MPI's).
_AUTO_ENV = ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """num_processes: processes in the run; process_id: this one (0 = the main process, which
    writes the run's merged outputs); coordinator: HOST:PORT of process 0's coordination service
    (None for one process, or where the scheduler's environment names it)."""

    num_processes: int = 1
    process_id: int = 0
    coordinator: str | None = None

    def __post_init__(self):
        if self.num_processes < 1:
            raise UserError(f"--num-processes must be >= 1, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise UserError(f"--process-id must be in [0, {self.num_processes}), got {self.process_id}")

    @property
    def is_main(self) -> bool:
        return self.process_id == 0

    @property
    def multi(self) -> bool:
        return self.num_processes > 1


def add_cluster_arguments(parser) -> None:
    """--coordinator/--num-processes/--process-id, shared by every command that runs multi-process."""
    g = parser.add_argument_group("multi-process runs (jax.distributed; see docs/SCALE.md)")
    g.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="address of process 0's coordination service; every process passes the same one "
        "(unset: one process, or the scheduler's environment: SLURM, Cloud TPU, JAX_COORDINATOR_ADDRESS)",
    )
    g.add_argument("--num-processes", type=int, default=None, metavar="N", help="processes in the run (default 1)")
    g.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0..N-1 (default 0)")


def cluster_from_args(args, environ: Mapping[str, str] = os.environ) -> Cluster:
    """The Cluster named by the flags of ``add_cluster_arguments``, or else by the environment."""
    n, i, coord = args.num_processes, args.process_id, args.coordinator
    if coord is None and n is None and i is None:
        if not any(k in environ for k in _AUTO_ENV):
            return Cluster()
        return Cluster(_env_int(environ, "num"), _env_int(environ, "id"))
    if (n or 1) > 1 and not coord:
        raise UserError("--num-processes > 1 needs --coordinator HOST:PORT (the same on every process)")
    return Cluster(n or 1, i or 0, coord)


def _env_int(environ: Mapping[str, str], which: str) -> int:
    keys = {
        "num": ("JAX_NUM_PROCESSES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"),
        "id": ("JAX_PROCESS_ID", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"),
    }[which]
    for k in keys:
        if k in environ:
            return int(environ[k])
    # Cloud TPU: jax.distributed finds the numbers itself; initialize() corrects them
    return 1 if which == "num" else 0


def initialize(cluster: Cluster) -> Cluster:
    """Join the run (call before any other JAX use); returns the Cluster as JAX sees it."""
    if not cluster.multi and cluster.coordinator is None and not any(k in os.environ for k in _AUTO_ENV):
        return cluster
    import jax

    if cluster.coordinator is not None:
        jax.distributed.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)
    else:
        jax.distributed.initialize()  # the scheduler's environment names everything
    return Cluster(jax.process_count(), jax.process_index(), cluster.coordinator)


def shard_of(key: str, num_shards: int) -> int:
    """A stable shard in [0, num_shards) for ``key`` (a problem id): the same on every host, in
    every Python (no PYTHONHASHSEED), for every run."""
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % num_shards


def split(items: Sequence[T], key: Callable[[T], str], num_shards: int) -> list[list[T]]:
    """``items`` by ``shard_of(key(item))``, each shard keeping the input order."""
    shards: list[list[T]] = [[] for _ in range(num_shards)]
    for item in items:
        shards[shard_of(key(item), num_shards)].append(item)
    return shards


def owned(num_shards: int, cluster: Cluster) -> list[int]:
    """The shards this process runs: shard s belongs to process s mod N."""
    return [s for s in range(num_shards) if s % cluster.num_processes == cluster.process_id]


def barrier(name: str, cluster: Cluster, timeout_s: float = 24 * 3600.0) -> None:
    """Wait until every process reaches the barrier ``name`` (a no-op in a one-process run).

    Uses the coordination service's barrier, not a device collective: no device work, and a
    stage that takes hours on one process (a long search shard) waits without a collective timing
    out."""
    if not cluster.multi:
        return
    from jax._src import distributed  # the coordination-service client has no public barrier

    client = distributed.global_state.client
    if client is None:
        raise RuntimeError("barrier() before rstar_jax.distributed.initialize()")
    client.wait_at_barrier(name, int(timeout_s * 1000))
