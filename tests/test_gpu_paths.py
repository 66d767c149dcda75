"""The GPU speed paths (bf16 autocast, channels_last, torch.compile and its eager fallback, no host
sync in the step), exercised on the CPU through a real Trainer; the CUDA-only checks are marked."""

from __future__ import annotations

import inspect
import traceback
import warnings
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from pyramid_lab.bench.loops import DeviceBatches
from pyramid_lab.models.pyramidnet import PyramidNet
from pyramid_lab.optim import SAM
from pyramid_lab.training.compile import ChannelsLast, Compile, CompileFallback
from pyramid_lab.training.divergence import DivergenceWatch, FirstNonFinite
from pyramid_lab.training.module import Classifier
from pyramid_lab.training.sam import SAMClassifier

SGD = partial(torch.optim.SGD, lr=0.05, momentum=0.9)
OPTIMIZERS = {"sgd": SGD, "sam": partial(SAM, base_optimizer=torch.optim.SGD, rho=0.05, lr=0.05)}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def classifier(optimizer: str) -> Classifier:
    """The module as pyramid_lab.build picks it: SAM's for the SAM optimizer."""
    return (SAMClassifier if optimizer == "sam" else Classifier)(tiny_net(), OPTIMIZERS[optimizer])


def tiny_net() -> PyramidNet:
    torch.manual_seed(0)
    return PyramidNet(depth=11, alpha=8, bottleneck=True, shakedrop=0.5)  # one unit per stage


def batches(n: int = 2, device: str = "cpu") -> DeviceBatches:
    g = torch.Generator().manual_seed(1)
    data = [
        (
            torch.randn(8, 3, 32, 32, generator=g).to(device),
            torch.randint(0, 10, (8,), generator=g).to(device),
        )
        for _ in range(n)
    ]
    return DeviceBatches(data, n)


class LossRecorder(pl.Callback):
    """Each training step's loss, and the dtype the network's logits came out in."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.logit_dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module):
        pl_module.net.fc.register_forward_hook(lambda m, i, out: self.logit_dtypes.add(out.dtype))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))


def fit(
    module: Classifier,
    precision: str = "32-true",
    steps: int = 2,
    device: str = "cpu",
    callbacks: list[pl.Callback] = (),
) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=list(callbacks),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(max_epochs|val_dataloader).*")
        trainer.fit(module, train_dataloaders=batches(steps, device))
    return trainer


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_bf16_mixed_training_step_is_finite(optimizer):
    recorder = LossRecorder()
    module = classifier(optimizer)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = fit(module, precision="bf16-mixed", callbacks=[recorder])
    assert trainer.global_step == 2
    assert len(recorder.losses) == 2 and all(torch.isfinite(torch.tensor(recorder.losses)))
    assert recorder.logit_dtypes == {torch.bfloat16}  # autocast was on for every pass
    after = list(module.parameters())
    assert all(p.dtype == torch.float32 for p in after)  # fp32 master weights
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_channels_last_weights_and_same_outputs(optimizer):
    module = classifier(optimizer)
    fit(module, callbacks=[ChannelsLast()])
    convs = [m for m in module.net.modules() if isinstance(m, nn.Conv2d)]
    # Still NHWC after two optimizer steps (a 1x1 conv's weight is both layouts at once).
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert any(not c.weight.is_contiguous() for c in convs)
    contiguous = tiny_net()
    contiguous.load_state_dict(module.net.state_dict())
    assert all(p.is_contiguous() for p in contiguous.parameters())
    x = torch.randn(4, 3, 32, 32)
    module.eval(), contiguous.eval()
    with torch.no_grad():
        torch.testing.assert_close(module(x), contiguous(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_compile_trains_and_keeps_checkpoint_keys(optimizer):
    # aot_eager traces forward and backward as inductor does, without its minute of C++ codegen.
    module = classifier(optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would fail the test
        speedups = [ChannelsLast(), Compile(backend="aot_eager")]
        trainer = fit(module, precision="bf16-mixed", callbacks=speedups)
    assert trainer.global_step == 2
    assert module.compiled is not None and module.compiled.compiled is not None
    assert module.state_dict().keys() == Classifier(tiny_net(), SGD).state_dict().keys()
    x = torch.randn(4, 3, 32, 32)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            module(x), module.net(x.contiguous(memory_format=torch.channels_last)), rtol=1e-4, atol=1e-5
        )


def failing_backend(graph_module, example_inputs):
    raise RuntimeError("no compiler here (deliberate)")


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_compile_failure_warns_once_and_trains_on_in_eager(optimizer):
    torch._dynamo.reset()
    module = classifier(optimizer)
    with pytest.warns(RuntimeWarning, match="fell back to eager mode") as caught:
        trainer = fit(module, steps=3, callbacks=[Compile(backend=failing_backend)])
    assert trainer.global_step == 3
    assert module.compiled.compiled is None  # eager for good
    fallbacks = [w for w in caught if "fell back to eager" in str(w.message)]
    assert len(fallbacks) == 1 and "deliberate" in str(fallbacks[0].message)


def test_compile_fallback_lets_a_genuine_error_through():
    fallback = CompileFallback(nn.Linear(3, 2), backend=failing_backend)
    with pytest.warns(RuntimeWarning, match="fell back"), pytest.raises(RuntimeError, match="shapes"):
        fallback(torch.randn(4, 5))  # eager raises the same shape error: not swallowed


class SyncOps(TorchDispatchMode):
    """Counts, by op and by the line of ours that ran it, the ops that make a CUDA host wait: a
    value read back, a data-dependent shape, or a tensor made from host data (``torch.tensor(x,
    device=...)``: a blocking host-to-device copy). On the CPU they run as usual but are seen
    all the same."""

    SYNCING = frozenset(
        {
            "_local_scalar_dense",
            "is_nonzero",
            "nonzero",
            "masked_select",
            "_unique2",
            "unique_dim",
            "unique_consecutive",
            "equal",
            "bincount",
            "repeat_interleave",
            "lift_fresh",
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.active = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if self.active and name in self.SYNCING:
            ours = [f for f in traceback.extract_stack() if "pyramid_lab" in f.filename]
            where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
            self.counts[f"{name} at {where}"] += 1
        return func(*args, **(kwargs or {}))


class InsideSteps(pl.Callback):
    def __init__(self, probe: SyncOps) -> None:
        self.probe = probe

    def on_train_batch_start(self, *args):
        self.probe.active = True

    def on_train_batch_end(self, *args):
        self.probe.active = False


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("check_every, expected", [(1, 4), (2, 2), (1000, 0)])
def test_training_step_syncs_only_for_the_divergence_check(optimizer, check_every, expected):
    # 4 steps; the finite-loss flag is read (one value) every check_every steps, never otherwise.
    probe = SyncOps()
    module = classifier(optimizer)
    with probe:  # the watch before the probe: its end-of-step read is inside the step
        fit(module, steps=4, callbacks=[DivergenceWatch(check_every), InsideSteps(probe)])
    lines, first = inspect.getsourcelines(FirstNonFinite.read)
    read_line = first + next(i for i, line in enumerate(lines) if "int(self._step)" in line)
    assert probe.counts == Counter(
        {f"_local_scalar_dense at divergence.py:{read_line}": expected} if expected else {}
    )


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_cuda_bf16_channels_last_compiled_steps_make_no_host_sync(optimizer):
    class NoSync(pl.Callback):  # any device-to-host copy inside a step raises
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx >= 2:  # after compilation and cuDNN autotuning
                torch.cuda.set_sync_debug_mode("error")

        def on_train_batch_end(self, *args):
            torch.cuda.set_sync_debug_mode("default")

    torch._dynamo.reset()
    recorder = LossRecorder()
    module = classifier(optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager on a GPU
        try:
            trainer = fit(
                module,
                precision="bf16-mixed",
                steps=5,
                device="cuda",
                callbacks=[ChannelsLast(), Compile(), NoSync(), recorder],
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert trainer.global_step == 5
    assert module.compiled.compiled is not None
    assert all(torch.isfinite(torch.tensor(recorder.losses)))
    assert recorder.logit_dtypes == {torch.bfloat16}
