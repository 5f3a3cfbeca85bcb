"""How much memory one device may use: ``memory_gb`` when the user sets it, else a safety
fraction of the accelerator's free memory (``memory_stats``) or, on CPU, of the host's available
memory (``MemAvailable``, a cgroup limit, an address-space rlimit) shared by the host's CPU
devices. Training sizes its micro-batches by it, the engine its decode batches."""

from __future__ import annotations

import resource

import jax
import numpy as np

GB = 1e9
DEVICE_FRACTION = 0.9  # of an accelerator's free memory
HOST_FRACTION = 0.6  # of the host's available memory (the host also holds the data, the compiler, the runtime)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_room() -> int | None:
    for limit, used in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            with open(limit) as f:
                raw = f.read().strip()
            with open(used) as f:
                cur = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw) - cur
    return None


def _rlimit_room() -> int | None:
    """Address space left under RLIMIT_AS (``ulimit -v``), if one is set."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return None
    return soft - size


def host_available_bytes() -> tuple[int, str]:
    """The host memory a process may still take: the least of MemAvailable, the cgroup's room and
    the address-space rlimit's room."""
    found = {
        "MemAvailable": _meminfo_available(),
        "cgroup limit": _cgroup_room(),
        "RLIMIT_AS": _rlimit_room(),
    }
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        return 8 * 2**30, "an assumed 8 GiB host"
    name = min(found, key=found.get)
    return max(found[name], 0), name


def memory_budget(memory_gb: float | None, agree: bool = True) -> tuple[int, str]:
    """(bytes one device may use, where the number comes from): ``memory_gb`` if set, else a share
    of the device's free memory; in a multi-process run the least over the processes, so that every
    process sizes its batches alike (``agree=False``: this process's own, with no collective, for
    sizes that only this process's devices see, such as the engine's decode batches)."""
    if memory_gb is not None:
        return int(memory_gb * GB), f"memory_gb={memory_gb}"
    budget, source = _local_budget()
    if agree and jax.process_count() > 1:  # every process gets the same number (whole MiB)
        from jax.experimental import multihost_utils

        mib = multihost_utils.process_allgather(np.int32(min(budget >> 20, 2**31 - 1)))  # int32: no x64 needed
        least = int(np.min(mib)) << 20
        source = source if least == budget >> 20 << 20 else f"the least over {jax.process_count()} processes"
        budget = least
    return budget, source


def _local_budget() -> tuple[int, str]:
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats() if dev.platform != "cpu" else None
    except Exception:  # noqa: BLE001 - a backend without memory stats
        stats = None
    if stats and stats.get("bytes_limit"):
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        return int(free * DEVICE_FRACTION), f"{DEVICE_FRACTION:.0%} of {dev.device_kind} free memory"
    host, name = host_available_bytes()
    n = len(jax.local_devices())
    share = f" / {n} CPU devices" if n > 1 else ""
    return int(host * HOST_FRACTION / n), f"{HOST_FRACTION:.0%} of the host's {name} ({host / GB:.1f} GB){share}"
