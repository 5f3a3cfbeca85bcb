"""orbax checkpoints of the whole train state: params, optimizer state, step (the data
cursor) and RNG, plus JSON metadata; async, keep the last N, restore onto shardings."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """One folder of step-numbered checkpoints. ``meta`` records what the state was trained on
    (batch size, data fingerprint, ...): resuming with different settings is an error."""

    def __init__(self, directory: str, keep: int = 2, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save),
        )

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        self._mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def restore(self, state, step: int | None = None):
        """(state, meta) of ``step`` (default latest), laid out like ``state`` (arrays give shape,
        dtype and sharding)."""
        step = self.latest_step() if step is None else step
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        out = self._mngr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
        return out.state, dict(out.meta)

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()
