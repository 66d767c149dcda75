"""callbacks.compile.enabled=true compiles the training graph once and the evaluation graph once:
not again per epoch, per stage (sanity check, validation, test) or for the last, smaller batch of a
split."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.train import train
from pyramid_lab.training.compile import CompileFallback
from tests.helpers import TINY, compose_config

COMPILED: list[tuple[bool, int]] = []  # (grad enabled, batch size) of each graph Dynamo compiled


def _counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
    images = [
        t
        for t in example_inputs  # (B, 3, 32, 32), not a (C, 3, k, k) convolution weight
        if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[1:] == (3, 32, 32)
    ]
    COMPILED.append((torch.is_grad_enabled(), images[0].shape[0] if images else -1))
    return gm.forward  # runs the captured graph eagerly: no code generation


if "count_graphs" not in torch._dynamo.list_backends(exclude_tags=()):
    torch._dynamo.register_backend(_counting_backend, name="count_graphs")


@pytest.mark.slow  # ~10 s on an idle 2-core CPU
def test_a_compiled_run_compiles_training_once_and_evaluation_once(tmp_path):
    # Two epochs of 3 steps, a sanity check, two validations and a test; digits' 270 validation and
    # 270 test images leave a smaller last batch in each.
    overrides = [o for o in TINY if not o.startswith(("+trainer.limit_", "trainer.num_sanity"))]
    cfg = compose_config(
        [
            *overrides,
            "+trainer.limit_train_batches=3",
            "trainer.max_epochs=2",
            "trainer.num_sanity_val_steps=1",
            "callbacks.compile.enabled=true",
            "callbacks.compile.backend=count_graphs",
        ],
        tmp_path,
    )
    torch._dynamo.reset()
    COMPILED.clear()
    record = train(cfg)
    assert record["status"] == "completed" and record["epochs"] == 2
    eval_batch = cfg.data.get("eval_batch_size") or 2 * cfg.data.batch_size
    assert 270 % eval_batch, "the test needs a smaller last batch"
    assert sorted(COMPILED) == [(False, eval_batch), (True, cfg.data.batch_size)], COMPILED


def test_a_partial_eval_batch_is_padded_and_exact():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2)).eval()
    net(torch.randn(2, 3, 8, 8))  # materialise the lazy layer
    fallback = CompileFallback(net, backend="count_graphs")
    COMPILED.clear()
    full, part = (torch.randn(n, 3, 8, 8).contiguous(memory_format=torch.channels_last) for n in (6, 4))
    with torch.no_grad():
        fallback(full)
        out = fallback(part)
        torch.testing.assert_close(out, net(part))
    assert out.shape == (4, 2) and len(COMPILED) == 1


def test_compile_mode_reaches_torch_compile(monkeypatch):
    seen = {}
    monkeypatch.setattr(torch, "compile", lambda net, **kwargs: seen.update(kwargs) or net)
    CompileFallback(nn.Linear(2, 2), "inductor", "reduce-overhead")
    assert seen == {"backend": "inductor", "mode": "reduce-overhead"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["callbacks.compile.mode=fastest"],
            "callbacks.compile.mode='fastest' is not one of default, reduce-overhead",
        ),
        (
            ["callbacks.compile.mode=max-autotune", "callbacks.compile.backend=eager"],
            "callbacks.compile.mode=max-autotune needs callbacks.compile.backend=inductor",
        ),
    ],
)
def test_a_bad_compile_mode_is_one_line(tmp_path, overrides, message):
    cfg = compose_config([*TINY, "callbacks.compile.enabled=true", *overrides], tmp_path)
    with pytest.raises(ConfigError, match=f"^{message}"):
        train(cfg)
