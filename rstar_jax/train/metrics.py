"""Training metrics: TensorBoard (tensorboardX), a JSON-lines log and a tqdm bar (process 0 only)."""

from __future__ import annotations

import json
import os

import jax
from tqdm.auto import tqdm


class MetricsLogger:
    def __init__(self, log_dir: str, total_steps: int, initial_step: int = 0, desc: str = "train"):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter

        os.makedirs(log_dir, exist_ok=True)
        self._tb = SummaryWriter(os.path.join(log_dir, "tb"))
        self._json = open(os.path.join(log_dir, "metrics.jsonl"), "a", encoding="utf-8")
        self._bar = tqdm(
            total=total_steps,
            initial=initial_step,
            desc=desc,
            dynamic_ncols=True,
            disable=os.environ.get("RSTAR_NO_PROGRESS") == "1",
        )

    def advance(self, n: int = 1) -> None:
        if self.enabled:
            self._bar.update(n)

    def log(self, step: int, metrics: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        for k, v in metrics.items():
            self._tb.add_scalar(f"{prefix}/{k}", v, step)
        self._json.write(json.dumps({"step": step, "split": prefix, **metrics}) + "\n")
        self._json.flush()
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k in ("loss", "lr", "pair_acc")})

    def close(self) -> None:
        if self.enabled:
            self._bar.close()
            self._tb.close()
            self._json.close()
