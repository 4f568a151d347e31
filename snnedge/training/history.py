"""What :func:`snnedge.fit` measured, epoch by epoch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class History:
    """What :func:`snnedge.fit` measured, one entry per epoch.

    ``loss`` and ``accuracy`` are running means over the epoch's training batches (the weights
    change as it goes); ``val_loss`` and ``val_accuracy`` are measured after the epoch (empty
    without ``val=``); ``epoch_time_s`` is the wall time of the training part of each epoch.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)
    timesteps: int = 0

    @property
    def epochs(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A readable table, one row per epoch."""
        head = f"{'epoch':>5} {'loss':>8} {'acc':>7}"
        head += f" {'val_loss':>9} {'val_acc':>8}" if self.val_loss else ""
        rows = [head + f" {'time_s':>7}"]
        for i in range(self.epochs):
            row = f"{i + 1:>5} {self.loss[i]:>8.4f} {self.accuracy[i]:>7.4f}"
            if self.val_loss:
                row += f" {self.val_loss[i]:>9.4f} {self.val_accuracy[i]:>8.4f}"
            rows.append(row + f" {self.epoch_time_s[i]:>7.1f}")
        return "\n".join(rows)
