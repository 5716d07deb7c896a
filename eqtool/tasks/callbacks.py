"""Small Lightning callbacks used by :func:`eqtool.train.train`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L

__all__ = ["FitHistory"]


class FitHistory(L.Callback):
    """Append one JSON line per fit start/end to ``path`` (rank 0 only).

    Each line: ``{"event": "start"|"end", "epoch": int, "global_step": int, "time": unix seconds}``.
    A resumed run adds a ``start`` line whose ``global_step`` is the checkpoint's step, so the
    file shows where every session began and ended.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _write(self, trainer: L.Trainer, event: str) -> None:
        if not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = {"event": event, "epoch": int(trainer.current_epoch), "global_step": int(trainer.global_step),
                "time": time.time()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")

    def on_train_start(self, trainer, pl_module) -> None:
        self._write(trainer, "start")

    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer, "end")
