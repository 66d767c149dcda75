"""Behaviour of pyramid_lab.optim: SAM against hand computations and plain SGD, BatchNorm freezing
for SAM's second pass, the scheduler builders, and the conf/optimizer + conf/scheduler files."""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from functools import partial

import pytest
import torch
from torch import nn

from pyramid_lab.errors import ConfigError
from pyramid_lab.optim import SAM, WarmupPlateau, cosine_periodic, frozen_bn_stats, multistep, snapshot_epochs
from pyramid_lab.optim.schedule import build_schedule, counts_steps
from pyramid_lab.optim.schedulers import PeriodicCosine
from tests.helpers import CONFIG_DIR

CONF = CONFIG_DIR


def _tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)


def _loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((net(x) - y) ** 2).mean()


def _grads(net: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in net.parameters()]


# --- SAM ------------------------------------------------------------------------------------------


def test_first_step_climbs_rho_along_normalised_gradient_and_second_step_is_sgd_from_w():
    net, (x, y), rho, lr = _tiny_net(), _batch(), 0.05, 0.1
    w = [p.detach().clone() for p in net.parameters()]
    sam = SAM(net.parameters(), torch.optim.SGD, rho=rho, lr=lr)

    _loss(net, x, y).backward()
    g = _grads(net)
    g_norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    sam.first_step(zero_grad=True)
    for p, wi, gi in zip(net.parameters(), w, g):
        torch.testing.assert_close(p.detach(), wi + rho * gi / g_norm, rtol=0, atol=1e-7)
    assert all(p.grad is None for p in net.parameters())

    _loss(net, x, y).backward()
    g_adv = _grads(net)  # gradient at w + e(w)
    sam.second_step()
    for p, wi, gi in zip(net.parameters(), w, g_adv):
        torch.testing.assert_close(p.detach(), wi - lr * gi, rtol=0, atol=1e-7)


def test_second_step_restores_the_weights_bit_exactly():
    net, (x, y) = _tiny_net(), _batch()
    w = [p.detach().clone() for p in net.parameters()]
    sam = SAM(net.parameters(), torch.optim.SGD, rho=0.5, lr=0.0)
    _loss(net, x, y).backward()
    sam.step(lambda: _loss(net, x, y).backward())
    assert all(torch.equal(p, wi) for p, wi in zip(net.parameters(), w))


def test_second_step_equals_base_optimizer_with_momentum_and_weight_decay():
    net, (x, y) = _tiny_net(), _batch()
    ref = copy.deepcopy(net)
    kw = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    sam = SAM(net.parameters(), torch.optim.SGD, rho=0.05, **kw)
    sgd = torch.optim.SGD(ref.parameters(), **kw)
    for _ in range(3):
        _loss(net, x, y).backward()
        sam.first_step(zero_grad=True)
        _loss(net, x, y).backward()
        for q, p in zip(ref.parameters(), net.parameters()):
            q.grad = p.grad.clone()  # plain SGD fed SAM's perturbed-point gradient
        sam.second_step(zero_grad=True)
        sgd.step()
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def test_sam_differs_from_sgd_on_a_nonlinear_model():
    (x, y), kw = _batch(), dict(lr=0.1, momentum=0.9)
    net_sam, net_sgd = _tiny_net(), _tiny_net()
    sam = SAM(net_sam.parameters(), torch.optim.SGD, rho=0.05, **kw)
    sgd = torch.optim.SGD(net_sgd.parameters(), **kw)
    for _ in range(5):
        sam.zero_grad()
        _loss(net_sam, x, y).backward()
        sam.step(lambda: _loss(net_sam, x, y).backward())
        sgd.zero_grad()
        _loss(net_sgd, x, y).backward()
        sgd.step()
    diff = max((p - q).abs().max().item() for p, q in zip(net_sam.parameters(), net_sgd.parameters()))
    assert diff > 1e-4


def test_sam_matches_hand_computation_on_a_quadratic():
    # L(w) = (a w1^2 + b w2^2) / 2, so grad L(w) = (a w1, b w2).
    a, b, rho, lr, w1, w2 = 1.0, 10.0, 0.1, 0.05, 1.0, 0.5
    w = nn.Parameter(torch.tensor([w1, w2], dtype=torch.float64))
    h = torch.tensor([a, b], dtype=torch.float64)
    sam = SAM([w], torch.optim.SGD, rho=rho, lr=lr)

    def loss():
        return 0.5 * (h * w**2).sum()

    loss().backward()
    sam.step(lambda: loss().backward())

    g1, g2 = a * w1, b * w2
    n = math.hypot(g1, g2)
    e1, e2 = rho * g1 / n, rho * g2 / n
    expected = [w1 - lr * a * (w1 + e1), w2 - lr * b * (w2 + e2)]
    torch.testing.assert_close(w.detach(), torch.tensor(expected, dtype=torch.float64))


def test_adaptive_sam_matches_hand_computation():
    a, b, rho, lr, w1, w2 = 1.0, 10.0, 0.5, 0.05, 2.0, -0.5
    w = nn.Parameter(torch.tensor([w1, w2], dtype=torch.float64))
    h = torch.tensor([a, b], dtype=torch.float64)
    sam = SAM([w], torch.optim.SGD, rho=rho, adaptive=True, lr=lr)

    def loss():
        return 0.5 * (h * w**2).sum()

    loss().backward()
    sam.first_step(zero_grad=True)
    g1, g2 = a * w1, b * w2
    n = math.hypot(abs(w1) * g1, abs(w2) * g2)  # || |w| * g ||
    e1, e2 = rho * w1**2 * g1 / n, rho * w2**2 * g2 / n
    torch.testing.assert_close(w.detach(), torch.tensor([w1 + e1, w2 + e2], dtype=torch.float64))
    loss().backward()
    sam.second_step()
    expected = [w1 - lr * a * (w1 + e1), w2 - lr * b * (w2 + e2)]
    torch.testing.assert_close(w.detach(), torch.tensor(expected, dtype=torch.float64))


def test_closure_step_equals_manual_first_and_second_step():
    (x, y), kw = _batch(), dict(rho=0.05, lr=0.1, momentum=0.9)
    net_a, net_b = _tiny_net(), _tiny_net()
    opt_a = SAM(net_a.parameters(), torch.optim.SGD, **kw)
    opt_b = SAM(net_b.parameters(), torch.optim.SGD, **kw)
    for _ in range(3):
        _loss(net_a, x, y).backward()
        opt_a.first_step(zero_grad=True)
        _loss(net_a, x, y).backward()
        opt_a.second_step(zero_grad=True)

        loss_b = _loss(net_b, x, y)
        loss_b.backward()

        def closure():
            loss = _loss(net_b, x, y)
            loss.backward()
            return loss

        returned = opt_b.step(closure)
        opt_b.zero_grad()
        assert returned is not None and returned.requires_grad  # grad re-enabled in the closure
    for p, q in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(p, q)


def test_partial_base_optimizer_and_hyperparameters_reach_the_groups():
    net = _tiny_net()
    sam = SAM(net.parameters(), partial(torch.optim.SGD, momentum=0.9), rho=0.1, lr=0.2)
    group = sam.base_optimizer.param_groups[0]
    assert group["lr"] == 0.2 and group["momentum"] == 0.9
    assert sam.param_groups is sam.base_optimizer.param_groups
    assert sam.state is sam.base_optimizer.state


def test_sam_rho_does_not_shadow_adadelta_rho():
    net, (x, y) = _tiny_net(), _batch()
    sam = SAM(net.parameters(), torch.optim.Adadelta, rho=0.05, lr=1.0)
    assert sam.param_groups[0]["rho"] == 0.9  # Adadelta's own decay, untouched
    assert sam.param_groups[0]["sam_rho"] == 0.05
    _loss(net, x, y).backward()
    sam.step(lambda: _loss(net, x, y).backward())


def test_params_without_grad_and_params_missing_from_the_second_pass():
    net = _tiny_net()
    unused = nn.Parameter(torch.ones(3))  # never gets a gradient
    head2 = nn.Linear(2, 1)  # gets a gradient in the first pass only
    params = [*net.parameters(), unused, *head2.parameters()]
    w = [p.detach().clone() for p in params]
    sam = SAM(params, torch.optim.SGD, rho=0.5, lr=0.0)
    x, y = _batch()
    (_loss(net, x, y) + head2(net(x)).pow(2).mean()).backward()
    sam.first_step(zero_grad=True)
    assert torch.equal(unused, w[-3]) and not torch.equal(head2.weight, w[-2])
    _loss(net, x, y).backward()  # head2 gets no gradient here
    sam.second_step()
    assert all(torch.equal(p, wi) for p, wi in zip(params, w))  # lr 0: all exactly back


@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate")
@pytest.mark.parametrize("listed_twice", [False, True])
def test_tied_weight_is_perturbed_once_with_its_summed_gradient(listed_twice):
    torch.manual_seed(0)
    emb = nn.Linear(3, 3, bias=False)
    out = nn.Linear(3, 3, bias=False)
    out.weight = emb.weight  # weight tying
    model = nn.ModuleList([emb, out])
    w = emb.weight.detach().clone()
    params = [emb.weight, out.weight] if listed_twice else list(model.parameters())
    sam = SAM(params, torch.optim.SGD, rho=0.1, lr=0.0)
    x = torch.randn(5, 3)
    out(torch.tanh(emb(x))).pow(2).sum().backward()
    g = emb.weight.grad.clone()
    sam.first_step()
    torch.testing.assert_close(model[0].weight.detach(), w + 0.1 * g / g.norm())


def test_state_dict_round_trip_keeps_momentum_and_resumes_identically():
    (x, y), kw = _batch(), dict(rho=0.05, lr=0.1, momentum=0.9)

    def run(net, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            _loss(net, x, y).backward()
            opt.step(lambda: _loss(net, x, y).backward())

    net_a = _tiny_net()
    opt_a = SAM(net_a.parameters(), torch.optim.SGD, **kw)
    run(net_a, opt_a, 2)
    state = copy.deepcopy(opt_a.state_dict())
    assert all("momentum_buffer" in s for s in state["state"].values())
    assert "old_p" not in str(state)

    net_b = copy.deepcopy(net_a)
    opt_b = SAM(net_b.parameters(), torch.optim.SGD, rho=0.05, lr=0.5, momentum=0.0)
    opt_b.load_state_dict(state)
    assert opt_b.param_groups is opt_b.base_optimizer.param_groups
    assert opt_b.state is opt_b.base_optimizer.state
    assert opt_b.param_groups[0]["lr"] == 0.1 and opt_b.param_groups[0]["momentum"] == 0.9
    run(net_a, opt_a, 2)
    run(net_b, opt_b, 2)
    for p, q in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(p, q)


def test_deepcopy_keeps_the_base_optimizer_and_the_shared_groups():
    sam = SAM(_tiny_net().parameters(), torch.optim.SGD, lr=0.1)
    twin = copy.deepcopy(sam)
    assert twin.param_groups is twin.base_optimizer.param_groups
    assert twin.state is twin.base_optimizer.state


def test_scheduler_on_sam_or_on_base_changes_the_lr_the_base_optimizer_uses():
    net, (x, y) = _tiny_net(), _batch()
    sam = SAM(net.parameters(), torch.optim.SGD, lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(sam, step_size=1, gamma=0.5)
    _loss(net, x, y).backward()
    sam.step(lambda: _loss(net, x, y).backward())
    sched.step()
    assert sam.base_optimizer.param_groups[0]["lr"] == 0.5

    sched_base = torch.optim.lr_scheduler.MultiplicativeLR(sam.base_optimizer, lambda _: 0.1)
    sam.zero_grad()
    _loss(net, x, y).backward()
    sam.step(lambda: _loss(net, x, y).backward())
    sched_base.step()
    assert sam.param_groups[0]["lr"] == pytest.approx(0.05)


def test_add_param_group_reaches_the_base_optimizer():
    net, extra = _tiny_net(), nn.Linear(2, 2)
    sam = SAM(net.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    sam.add_param_group({"params": extra.parameters(), "lr": 0.01})
    assert len(sam.base_optimizer.param_groups) == 2
    group = sam.param_groups[1]
    assert group["momentum"] == 0.9 and group["lr"] == 0.01 and group["sam_rho"] == 0.05


@pytest.mark.parametrize("rho", [0.0, -1.0, float("nan")])
def test_bad_rho_is_a_one_line_config_error(rho):
    with pytest.raises(ConfigError, match=r"optimizer\.rho=.* must be > 0") as err:
        SAM(_tiny_net().parameters(), torch.optim.SGD, rho=rho, lr=0.1)
    assert "\n" not in str(err.value)


def test_misuse_raises():
    net, (x, y) = _tiny_net(), _batch()
    sam = SAM(net.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="no gradients"):
        sam.first_step()
    with pytest.raises(RuntimeError, match="without first_step"):
        sam.second_step()
    _loss(net, x, y).backward()
    with pytest.raises(RuntimeError, match="closure"):
        sam.step()
    sam.first_step()
    with pytest.raises(RuntimeError, match="twice"):
        sam.first_step()
    with pytest.raises(ConfigError, match="base_optimizer"):
        SAM(net.parameters(), torch.optim.SGD(net.parameters(), lr=0.1), lr=0.1)


def test_lightning_manual_optimization_drives_sam_once_per_step():
    """The protocol the LightningModule follows: first pass outside, second pass in the closure."""
    pl = pytest.importorskip("pytorch_lightning")

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.net = nn.Sequential(
                nn.Linear(3, 8), nn.BatchNorm1d(8, momentum=None), nn.ReLU(), nn.Linear(8, 2)
            )
            self.closure_calls = 0

        def training_step(self, batch, batch_idx):
            x, y = batch
            opt = self.optimizers()
            loss = nn.functional.cross_entropy(self.net(x), y)  # at w: BN statistics update
            opt.zero_grad()
            self.manual_backward(loss)

            def closure():  # at w + e(w)
                self.closure_calls += 1
                with frozen_bn_stats(self.net):
                    loss_adv = nn.functional.cross_entropy(self.net(x), y)
                self.manual_backward(loss_adv)
                self.clip_gradients(opt, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
                return loss_adv

            opt.step(closure=closure)  # one optimizer step for Lightning: global_step += 1
            return loss

        def on_train_epoch_end(self):
            self.lr_schedulers().step()  # manual optimization: Lightning steps no scheduler

        def configure_optimizers(self):
            opt = SAM(self.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    module = Module()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    sam = module.optimizers().optimizer
    assert trainer.global_step == module.closure_calls == 8
    assert module.net[1].num_batches_tracked.item() == 8  # once per step, not twice
    assert sam.param_groups[0]["lr"] == pytest.approx(0.025)
    assert all("momentum_buffer" in s for s in sam.state_dict()["state"].values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sam_step_on_cuda_makes_no_host_sync():
    net = _tiny_net().cuda()
    x, y = (t.cuda() for t in _batch())
    sam = SAM(net.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    for adaptive in (False, True):
        sam.param_groups[0]["sam_adaptive"] = adaptive
        _loss(net, x, y).backward()
        torch.cuda.set_sync_debug_mode("error")  # any device-to-host copy raises
        try:
            sam.first_step(zero_grad=True)
            _loss(net, x, y).backward()
            sam.second_step(zero_grad=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert all(p.is_cuda for p in sam.state_dict()["state"][0].values())


# --- BatchNorm ------------------------------------------------------------------------------------


def _bn_stats(model: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for b in model.buffers()]


@pytest.mark.parametrize("momentum", [0.1, None])
def test_frozen_bn_stats_freezes_the_second_pass_only(momentum):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 4),
        nn.BatchNorm1d(4, momentum=momentum),
        nn.ReLU(),
        nn.Linear(4, 4),
        nn.BatchNorm1d(4, momentum=momentum),
    ).train()
    x = torch.randn(16, 3)
    before = _bn_stats(model)
    out_first = model(x)  # first pass: statistics move
    after_first = _bn_stats(model)
    assert not all(torch.equal(a, b) for a, b in zip(before, after_first))

    with frozen_bn_stats(model):
        out_second = model(x)  # same weights: same batch-statistics normalisation
        out_second.sum().backward()
    assert torch.equal(out_first, out_second)
    assert all(torch.equal(a, b) for a, b in zip(after_first, _bn_stats(model)))
    assert all(m.track_running_stats for m in model if isinstance(m, nn.BatchNorm1d))

    model(x)  # after the block the statistics move again
    assert not all(torch.equal(a, b) for a, b in zip(after_first, _bn_stats(model)))


def test_frozen_bn_stats_cumulative_average_counts_only_first_passes():
    torch.manual_seed(0)
    bn, ref = nn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)
    batches = [torch.randn(8, 3) for _ in range(4)]
    for xb in batches:
        bn(xb)
        with frozen_bn_stats(bn):
            bn(xb * 10 + 5)  # a very different second pass leaves no trace
        ref(xb)
    assert bn.num_batches_tracked.item() == 4
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)


def test_frozen_bn_stats_restores_after_an_exception_and_keeps_untracked_bn():
    model = nn.Sequential(nn.BatchNorm1d(2), nn.BatchNorm1d(2, track_running_stats=False))
    with pytest.raises(KeyError), frozen_bn_stats(model):
        raise KeyError
    assert model[0].track_running_stats and not model[1].track_running_stats


# --- schedulers -----------------------------------------------------------------------------------


def _opt(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(opt: torch.optim.Optimizer, sched, epochs: int) -> list[float]:
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("milestones", [[32, 64], [0.32, 0.64], [64, 0.32]])
def test_multistep_epochs_and_fractions(milestones):
    opt = _opt(0.1)
    lrs = _lrs(opt, multistep(opt, milestones, gamma=0.1, max_epochs=100), 100)
    assert lrs[0] == lrs[31] == 0.1
    assert lrs[32] == pytest.approx(0.01) and lrs[63] == pytest.approx(0.01)
    assert lrs[64] == pytest.approx(0.001) and lrs[99] == pytest.approx(0.001)


def test_multistep_ints_without_max_epochs():
    opt = _opt(1.0)
    lrs = _lrs(opt, multistep(opt, [2], gamma=0.5), 4)
    assert lrs == [1.0, 1.0, 0.5, 0.5]


@pytest.mark.parametrize(
    "milestones, max_epochs, match",
    [
        ([32, 100], 100, r"scheduler\.milestones=.*100.*\[1, 99\]"),
        ([0, 64], 100, r"scheduler\.milestones=.*\[1, 99\]"),
        ([-5], None, r"scheduler\.milestones=.*>= 1"),
        ([0.5], None, r"scheduler\.milestones=.*fractions.*max_epochs"),
        ([1.5], 100, r"scheduler\.milestones=.*neither an epoch"),
        ("32", 100, r"scheduler\.milestones=.*list"),
    ],
)
def test_multistep_bad_milestones(milestones, max_epochs, match):
    with pytest.raises(ConfigError, match=match) as err:
        multistep(_opt(), milestones, max_epochs=max_epochs)
    assert "\n" not in str(err.value)


def test_multistep_repeated_epochs_warn_and_compound():
    opt = _opt(1.0)
    with pytest.warns(UserWarning, match=r"scheduler\.milestones=\[0\.32, 32\] gives repeated epochs"):
        sched = multistep(opt, [0.32, 32], gamma=0.5, max_epochs=100)
    lrs = _lrs(opt, sched, 34)
    assert lrs[31] == 1.0 and lrs[32] == pytest.approx(0.25)  # both decays at epoch 32


@pytest.mark.parametrize("max_epochs, expected", [(2, [1.0, 0.01]), (1, [1.0])])
def test_multistep_fractions_fit_a_run_too_short_for_them(max_epochs, expected):
    """A smoke run of a sweep must run: [0.32, 0.64] of 1 or 2 epochs stays inside the run."""
    opt = _opt(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the repeated-epoch warning at max_epochs=2
        sched = multistep(opt, [0.32, 0.64], gamma=0.1, max_epochs=max_epochs)
    assert _lrs(opt, sched, max_epochs) == pytest.approx(expected)


@pytest.mark.parametrize("gamma", [0.0, 1.5, -0.1])
def test_multistep_bad_gamma(gamma):
    with pytest.raises(ConfigError, match=r"scheduler\.gamma=.*\(0, 1\]"):
        multistep(_opt(), [1], gamma=gamma, max_epochs=10)


def test_warmup_plateau_ramps_then_reduces_after_patience():
    opt = _opt(1.0)
    sched = WarmupPlateau(opt, warmup_epochs=4, warmup_start_factor=0.2, factor=0.1, patience=2)
    assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
    lrs = [opt.param_groups[0]["lr"]]
    for metric in [
        9.0,
        8.0,
        7.0,
        6.0,  # warm-up: metrics ignored (None would do)
        1.0,
        1.0,
        1.0,
        1.0,  # best, then 3 bad epochs > patience 2: reduce
        0.5,
        0.6,
        0.6,
        0.6,
    ]:  # improvement resets the count, then 3 bad: reduce
        sched.step(metric)
        lrs.append(opt.param_groups[0]["lr"])
    expected = [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.01]
    assert lrs == pytest.approx(expected)
    assert sched.get_last_lr() == pytest.approx([0.01])


def test_warmup_plateau_needs_a_metric_only_after_warm_up():
    opt = _opt(1.0)
    sched = WarmupPlateau(opt, warmup_epochs=1)
    sched.step()  # warm-up
    with pytest.raises(ValueError, match="metric"):
        sched.step()


def test_warmup_plateau_without_warm_up_is_reduce_on_plateau():
    opt_a, opt_b = _opt(1.0), _opt(1.0)
    a = WarmupPlateau(opt_a, warmup_epochs=0, patience=1)
    b = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_b, patience=1)
    for m in [3.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0]:
        a.step(m)
        b.step(m)
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]


def test_warmup_plateau_state_dict_round_trip():
    metrics = [5.0, 4.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    opt = _opt(1.0)
    sched = WarmupPlateau(opt, warmup_epochs=3, patience=1)
    for m in metrics[:4]:
        sched.step(m)
    opt_state, sched_state = copy.deepcopy(opt.state_dict()), copy.deepcopy(sched.state_dict())
    rest = []
    for m in metrics[4:]:
        sched.step(m)
        rest.append(opt.param_groups[0]["lr"])

    opt2 = _opt(1.0)
    sched2 = WarmupPlateau(opt2, warmup_epochs=3, patience=1)  # Lightning: build, then load
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    rest2 = []
    for m in metrics[4:]:
        sched2.step(m)
        rest2.append(opt2.param_groups[0]["lr"])
    assert rest == rest2 and min(rest) < 1.0


def test_lightning_treats_warmup_plateau_as_a_plateau_scheduler():
    pl_optimizer = pytest.importorskip("pytorch_lightning.core.optimizer")
    sched = WarmupPlateau(_opt(), warmup_epochs=2)
    [config] = pl_optimizer._configure_schedulers_automatic_opt(
        [{"scheduler": sched, "interval": "epoch", "monitor": "train/loss"}], None
    )
    assert config.reduce_on_plateau and config.monitor == "train/loss"


@pytest.mark.parametrize(
    "kwargs, key",
    [
        (dict(warmup_epochs=-1), "warmup_epochs"),
        (dict(warmup_start_factor=0.0), "warmup_start_factor"),
        (dict(factor=1.0), "factor"),
        (dict(patience=1.5), "patience"),
        (dict(mode="up"), "mode"),
        (dict(min_lr=-1.0), "min_lr"),
    ],
)
def test_warmup_plateau_bad_arguments(kwargs, key):
    with pytest.raises(ConfigError, match=rf"scheduler\.{key}="):
        WarmupPlateau(_opt(), **kwargs)


@pytest.mark.parametrize(
    "T_0, T_mult, max_epochs, expected",
    [
        (10, 2, 70, [9, 29, 69]),
        (10, 2, 100, [9, 29, 69]),
        (10, 1, 30, [9, 19, 29]),
        (10, 1, 230, list(range(9, 230, 10))),
        (10, 2, 9, []),
    ],
)
def test_snapshot_epochs(T_0, T_mult, max_epochs, expected):  # noqa: N803
    assert snapshot_epochs(T_0, T_mult, max_epochs) == expected


def test_snapshot_epochs_are_where_torch_restarts():
    opt = _opt(1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2)
    lrs = _lrs(opt, sched, 22)
    restarts = [e for e in range(21) if lrs[e + 1] > lrs[e]]  # last epoch before each jump up
    assert restarts == [2, 8, 20] == snapshot_epochs(3, 2, 21)
    assert snapshot_epochs(3, 2, 20) == [2, 8]  # the third cycle is cut off


def test_snapshot_epochs_bad_arguments():
    with pytest.raises(ConfigError, match=r"scheduler\.T_0=0"):
        snapshot_epochs(0, 2, 10)
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs"):
        snapshot_epochs(10, 2, 0)


# --- conf/optimizer and conf/scheduler ------------------------------------------------------------


def _node(group: str, name: str, max_epochs: int = 100):
    from omegaconf import OmegaConf

    # Interpolations such as ${trainer.max_epochs} resolve against the composed root config.
    root = OmegaConf.create({"trainer": {"max_epochs": max_epochs}})
    path = CONF / group / f"{name}.yaml"
    node = OmegaConf.load(path)
    if path.read_text().startswith("# @package _global_"):  # the group's keys under its name
        node = node[group]
    root[group] = node
    return root[group]


@pytest.mark.parametrize("name", ["sgd", "adam", "adadelta", "sam"])
def test_optimizer_configs_build_and_step(name):
    from hydra.utils import instantiate

    net, (x, y) = _tiny_net(), _batch()
    w = [p.detach().clone() for p in net.parameters()]
    opt = instantiate(_node("optimizer", name))(net.parameters())
    _loss(net, x, y).backward()
    if name == "sam":
        assert isinstance(opt, SAM) and isinstance(opt.base_optimizer, torch.optim.SGD)
        assert opt.param_groups[0]["sam_rho"] == 0.05 and opt.param_groups[0]["lr"] == 0.1
        opt.step(lambda: _loss(net, x, y).backward())
    else:
        opt.step()
    assert not all(torch.equal(p, wi) for p, wi in zip(net.parameters(), w))


@pytest.mark.parametrize(
    "name, cls",
    [
        ("multistep", torch.optim.lr_scheduler.MultiStepLR),
        ("cosine", torch.optim.lr_scheduler.CosineAnnealingLR),
        ("cosine_restarts", torch.optim.lr_scheduler.CosineAnnealingWarmRestarts),
        ("exp", torch.optim.lr_scheduler.ExponentialLR),
        ("plateau", WarmupPlateau),
        ("cosine_periodic", PeriodicCosine),
        ("exp_staircase", torch.optim.lr_scheduler.StepLR),
    ],
)
def test_scheduler_configs_build_and_step_a_sam_optimizer(name, cls):
    from hydra.utils import instantiate

    node = _node("scheduler", name)
    assert "interval" not in node and "monitor" not in node  # the module's settings, not the scheduler's
    net, (x, y) = _tiny_net(), _batch()
    opt = SAM(net.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    factory = instantiate(node)
    # One step per epoch here: a step-counting schedule is given the steps in an epoch.
    sched = factory(opt, steps_per_epoch=1) if counts_steps(factory) else factory(opt)
    assert isinstance(sched, cls)
    lrs = []
    for epoch in range(100):
        lrs.append(opt.base_optimizer.param_groups[0]["lr"])
        if epoch < 2:  # two real SAM steps, then only the schedule
            opt.zero_grad()
            _loss(net, x, y).backward()
            opt.step(lambda: _loss(net, x, y).backward())
        sched.step(1.0) if name == "plateau" else sched.step()
    assert len(set(lrs)) > 1 and max(lrs) <= 0.1 + 1e-12
    if name == "multistep":
        assert lrs[31] == 0.1 and lrs[32] == pytest.approx(0.01) and lrs[64] == pytest.approx(1e-3)
    if name == "plateau":
        assert lrs[0] == pytest.approx(0.01) and lrs[5] == pytest.approx(0.1)


def _cosine(k: int, half_period: int, peak: float = 1.0, eta_min: float = 0.0) -> float:
    """The lr of step k: the cosine at the step's middle (pyramid_lab.optim.PeriodicCosine)."""
    return eta_min + (peak - eta_min) * (1 + math.cos(math.pi * (k + 0.5) / half_period)) / 2


@pytest.mark.parametrize("half_period, max_epochs, epochs", [(0.2, 100, 20), (10, None, 10), (0.2, 2, 1)])
def test_cosine_periodic_half_period_in_epochs_or_fractions(half_period, max_epochs, epochs):
    opt, steps_per_epoch = _opt(1.0), 3
    sched = cosine_periodic(
        opt, half_period=half_period, max_epochs=max_epochs, steps_per_epoch=steps_per_epoch
    )
    steps = epochs * steps_per_epoch
    assert sched.half_period == steps
    lrs = _lrs(opt, sched, 4 * steps + 1)
    assert lrs == pytest.approx([_cosine(k, steps) for k in range(len(lrs))], abs=1e-12)
    # Falls for a half-period, rises for the next, and no step trains at lr 0: the trough lies
    # between the half-period's last step and the next one, which train at the same lr.
    assert min(lrs) > 0 and lrs[steps - 1] == pytest.approx(lrs[steps]) and lrs[steps] < lrs[steps - 2]
    assert lrs[2 * steps - 1] == pytest.approx(lrs[2 * steps]) and lrs[2 * steps] > 1 - (math.pi / steps) ** 2
    assert all(b < a for a, b in itertools.pairwise(lrs[:steps]))


def test_cosine_periodic_eta_min_is_the_floor_and_its_state_resumes():
    opt = _opt(0.1)
    sched = cosine_periodic(opt, half_period=2, eta_min=0.01, steps_per_epoch=5)
    lrs = _lrs(opt, sched, 7)
    assert lrs == pytest.approx([_cosine(k, 10, 0.1, 0.01) for k in range(7)]) and min(lrs) > 0.01
    # Lightning builds the scheduler afresh, then loads the checkpoint's state.
    resumed_opt = _opt(0.1)
    resumed = cosine_periodic(resumed_opt, half_period=2, eta_min=0.01, steps_per_epoch=5)
    resumed.load_state_dict(sched.state_dict())
    resumed_opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"]  # the optimizer's own state
    assert _lrs(resumed_opt, resumed, 8) == pytest.approx([_cosine(k, 10, 0.1, 0.01) for k in range(7, 15)])


@pytest.mark.parametrize("half_period, max_epochs", [(0, 100), (1.5, 100), (-3, 100), (0.2, None)])
def test_cosine_periodic_bad_half_period(half_period, max_epochs):
    with pytest.raises(ConfigError, match=r"scheduler\.half_period=") as err:
        cosine_periodic(_opt(), half_period=half_period, max_epochs=max_epochs, steps_per_epoch=1)
    assert "\n" not in str(err.value)


def test_cosine_periodic_bad_eta_min():
    with pytest.raises(ConfigError, match=r"scheduler\.eta_min=-0\.1 must be a number >= 0"):
        cosine_periodic(_opt(), half_period=2, eta_min=-0.1, steps_per_epoch=1)


def test_a_step_counting_schedule_needs_the_step_interval_and_warms_up_in_epochs():
    factory = partial(cosine_periodic, half_period=2)
    assert counts_steps(factory) and not counts_steps(partial(torch.optim.lr_scheduler.StepLR, step_size=1))
    with pytest.raises(ConfigError, match=r"module\.scheduler_interval='epoch' .*cosine_periodic"):
        build_schedule(factory, _opt(), interval="epoch", steps_per_epoch=lambda: 4)
    opt = _opt(1.0)
    sched = build_schedule(factory, opt, interval="step", steps_per_epoch=lambda: 4, warmup_epochs=1)
    lrs = _lrs(opt, sched, 6)
    warm = [0.1 + 0.9 * k / 4 for k in range(4)] + [1.0, 1.0]  # one epoch = 4 steps of warm-up
    assert lrs == pytest.approx([w * _cosine(k, 8) for k, w in enumerate(warm)])
    # An epoch schedule never asks for the steps per epoch (no trainer needed).
    epochs = build_schedule(
        partial(torch.optim.lr_scheduler.StepLR, step_size=1),
        _opt(),
        interval="epoch",
        steps_per_epoch=_no_call,
    )
    assert isinstance(epochs, torch.optim.lr_scheduler.StepLR)


def _no_call() -> int:
    raise AssertionError("steps_per_epoch asked for by an epoch schedule")
