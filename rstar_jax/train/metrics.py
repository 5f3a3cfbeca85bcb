"""Training metrics: TensorBoard (tensorboardX), a JSON-lines log and a tqdm bar (process 0 only).

A resumed run writes into the same folder: it restarts at its last checkpoint, which may be
before the last point already logged, so a point at a step the folder already holds (per
TensorBoard tag, and per split in ``metrics.jsonl``) is not written again; each series stays
one point per step.
"""

from __future__ import annotations

import json
import os
import struct

import jax
from tqdm.auto import tqdm


class MetricsLogger:
    def __init__(self, log_dir: str, total_steps: int, initial_step: int = 0, desc: str = "train"):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter

        os.makedirs(log_dir, exist_ok=True)
        tb_dir = os.path.join(log_dir, "tb")
        self._tb_last = logged_steps(tb_dir)  # tag -> last step already in the event files
        # event files are named by the second and the host: a run resumed within the same second
        # would overwrite the previous file without a suffix of its own
        n = len(os.listdir(tb_dir)) if os.path.isdir(tb_dir) else 0
        self._tb = SummaryWriter(tb_dir, filename_suffix=f".{os.getpid()}.{n}")
        json_path = os.path.join(log_dir, "metrics.jsonl")
        self._json_last = _jsonl_steps(json_path)  # split -> last step already in metrics.jsonl
        self._json = open(json_path, "a", encoding="utf-8")
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
            tag = f"{prefix}/{k}"
            if step > self._tb_last.get(tag, -1):
                self._tb.add_scalar(tag, v, step)
        if step > self._json_last.get(prefix, -1):
            self._json.write(json.dumps({"step": step, "split": prefix, **metrics}) + "\n")
            self._json.flush()
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k in ("loss", "lr", "pair_acc")})

    def close(self) -> None:
        if self.enabled:
            self._bar.close()
            self._tb.close()
            self._json.close()


def read_scalars(tb_dir: str) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the event files of ``tb_dir``, file by file in name
    order. A record cut short (a killed writer) ends its file."""
    from tensorboardX.proto import event_pb2

    out = []
    if not os.path.isdir(tb_dir):
        return out
    for name in sorted(os.listdir(tb_dir)):
        if "tfevents" not in name:
            continue
        with open(os.path.join(tb_dir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):  # TFRecord: u64 length, u32 crc, payload, u32 crc
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            if pos + 12 + n + 4 > len(data):
                break
            try:
                event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            except Exception:  # noqa: BLE001  (protobuf's DecodeError: a damaged record)
                break
            pos += 12 + n + 4
            for v in event.summary.value:
                out.append((v.tag, int(event.step), float(v.simple_value)))
    return out


def logged_steps(tb_dir: str) -> dict[str, int]:
    """The last step logged for each scalar tag in ``tb_dir``."""
    last: dict[str, int] = {}
    for tag, step, _ in read_scalars(tb_dir):
        last[tag] = max(last.get(tag, -1), step)
    return last


def _jsonl_steps(path: str) -> dict[str, int]:
    """The last step of each split in ``metrics.jsonl``; a last line cut short by a kill is removed
    (appending after it would spoil the next line too)."""
    last: dict[str, int] = {}
    if not os.path.exists(path):
        return last
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            f.truncate(end)
    for line in data[:end].splitlines():
        try:
            row = json.loads(line)
            last[row["split"]] = max(last.get(row["split"], -1), int(row["step"]))
        except (ValueError, KeyError, TypeError):
            continue
    return last
