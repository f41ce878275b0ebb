"""What a run leaves beside its checkpoint: ``metrics.csv`` (one row per epoch; epoch 0 is the evaluation before
training), ``curve.png`` (training loss and
evaluation recall per epoch, matplotlib) and, when the ``tensorboard`` package is installed, event files under
``tensorboard/``."""
from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_csv(path: Path, history: list[dict]) -> None:
    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for row in history:
            w.writerow({k: row.get(k, "") for k in cols})
    tmp.replace(path)


def plot_curve(path: Path, history: list[dict], title: str, keys=("t2i_R@1", "i2t_R@1", "t2i_R@5")) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot(ep, [r.get("train_loss", float("nan")) for r in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    keys = [k for k in keys if k in history[-1]]
    if keys:
        ax2 = ax.twinx()
        for k, c in zip(keys, ("tab:red", "tab:orange", "tab:green")):
            ax2.plot(ep, [r.get(k) for r in history], "s--", color=c, label=k)
        ax2.set_ylabel("recall (%)")
        ax2.legend(loc="center right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(".curve.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


class TensorBoard:
    """Scalars to ``out/tensorboard`` when the ``tensorboard`` package is installed; otherwise does nothing (and
    says so once in the log)."""

    def __init__(self, out: Path):
        self.writer = None
        if importlib.util.find_spec("tensorboard") is None:
            log.info("tensorboard is not installed: metrics go to metrics.csv and curve.png only")
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tensorboard"))

    def add(self, row: dict) -> None:
        if self.writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["TensorBoard", "plot_curve", "write_csv"]
