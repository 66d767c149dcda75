"""Snapshot ensembles at the restarts of a cosine schedule, as a Lightning callback."""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
from torchmetrics.classification import MulticlassAccuracy

from pyramid_lab.optim import snapshot_epochs


class SnapshotEnsemble(pl.Callback):
    """Snapshot ensembles (Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free").

    Keeps the network's weights at the end of every restart cycle of
    ``CosineAnnealingWarmRestarts(T_0, T_mult)`` (on the host, so the device holds one model
    while training) and, at test time, logs ``test/acc_ensemble``: the accuracy of the average of
    the snapshots' softmax outputs, beside the single model's ``test/acc``, and
    ``test/ensemble_size``.

    Args:
        T_0: epochs of the first cycle. T_mult: growth factor of the cycles.
        max_epochs: the run's length; cycles that do not end within it give no snapshot.
    """

    def __init__(self, T_0: int, T_mult: int = 1, max_epochs: int = 100) -> None:
        self.snapshot_epochs = set(snapshot_epochs(T_0, T_mult, max_epochs))
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self._members: list[torch.nn.Module] = []
        self._accuracy: MulticlassAccuracy | None = None
        # This rank's ensemble probabilities in test order, read by TestPredictions at on_test_end.
        self.test_probs: dict[str, torch.Tensor] = {}
        self._probs: list[torch.Tensor] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch in self.snapshot_epochs:
            state = pl_module.net.state_dict()
            self.snapshots.append({k: v.detach().to("cpu", copy=True) for k, v in state.items()})

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._members = []
        for state in self.snapshots:
            member = copy.deepcopy(pl_module.net)
            member.load_state_dict(state)
            self._members.append(member.eval())
        self._accuracy = MulticlassAccuracy(pl_module.hparams.num_classes, average="micro").to(
            pl_module.device
        )
        self._probs, self.test_probs = [], {}

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: tuple[torch.Tensor, torch.Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._members:
            return
        x, y = batch  # already transferred and normalised (on_after_batch_transfer)
        x = x.contiguous(memory_format=pl_module.memory_format)
        probs = torch.stack([member(x).float().softmax(-1) for member in self._members]).mean(0)
        self._accuracy.update(probs, y)
        self._probs.append(probs)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._members:
            pl_module.log("test/acc_ensemble", self._accuracy.compute())  # synced across ranks
            self.test_probs = {"ensemble": torch.cat(self._probs)}
        self._probs = []
        pl_module.log("test/ensemble_size", float(len(self._members)))
        self._members = []

    def state_dict(self) -> dict[str, Any]:
        # Resumed runs keep the snapshots taken before the interruption.
        return {"snapshots": self.snapshots}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.snapshots = state_dict["snapshots"]
