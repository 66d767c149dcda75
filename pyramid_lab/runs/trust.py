"""Which ``_target_`` values a config read back from a file may name before anything instantiates it.

A checkpoint's saved config, a resumed checkpoint's hyper-parameters and the pruner a search keeps
in its study database are plain data, so weights-only loading lets them through; but Hydra's
``instantiate`` calls whatever ``_target_`` they name (Hydra 1.3.8's own blocklist stops targets such
as ``os.remove`` and ``shutil.rmtree``, not ``builtins.open`` or ``numpy.load``), and
``{_target_: builtins.open, _args_: [FILE, w]}`` creates FILE. Every such config is checked here
first: each ``_target_`` anywhere in it (nested dicts and lists, ``_args_`` included) must resolve
to an object of the allow-list below, or the load stops with one line naming the key and the
target. The user's ``trust_checkpoint=true`` skips the check, for a file they trust.

The allow-list is what the package's own configs name (tests/test_trust.py checks every option of
every group against it): pyramid_lab's classes and its builder functions, classes of
``torch.optim`` and ``torch.nn``, Lightning's loggers and callbacks, and Optuna's pruners and
samplers. A target is judged by the object it resolves to, not by its spelling:
``pyramid_lab.evaluate.np.load`` spells a pyramid_lab path but is ``numpy.load``, and is refused.
Other pyramid_lab functions are refused too: ``pyramid_lab.runs.atomic.atomic_write`` would write
any file.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

from hydra._internal.utils import _locate  # the resolver instantiate itself uses
from omegaconf import OmegaConf

from pyramid_lab.errors import ConfigError

# Packages whose classes a config may name.
CLASS_PACKAGES = (
    "pyramid_lab",
    "torch.optim",
    "torch.nn",
    "pytorch_lightning.loggers",
    "pytorch_lightning.callbacks",
    "lightning.pytorch.loggers",
    "lightning.pytorch.callbacks",
    "optuna.pruners",
    "optuna.samplers",
)
# Modules whose functions a config may name: the builders (pyramidnet196_a48, multistep, make_trainer).
FUNCTION_PACKAGES = ("pyramid_lab.models", "pyramid_lab.optim", "pyramid_lab.training.precision")
# hydra.utils.get_class(path) names a class by its path (SAM's base_optimizer): allowed when the
# class at ``path`` is.
GET_CLASS = "hydra.utils.get_class"
ALLOWED_TEXT = (
    "pyramid_lab's own classes and builders, torch.optim and torch.nn classes, Lightning's loggers "
    "and callbacks, Optuna's pruners and samplers"
)
INTERPOLATION = "an interpolation (a saved config is resolved and holds none)"
# Public names only: no ``_private`` or ``__dunder__`` part (``__main__`` modules are entry points,
# and ``X.__init__.__globals__`` reaches a module's namespace); the package's configs need none.
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")


class UntrustedConfig(ConfigError):
    """A config read back from a file names a ``_target_`` outside the allow-list."""


def check_trusted(
    config: Any,
    source: str,
    trust: bool = False,
    bypass: str = "trust_checkpoint=true",
    resolved: bool = True,
) -> None:
    """Refuse ``config`` if any ``_target_`` in it is outside the allow-list (unless ``trust``).

    Args:
        config: a dict, list or OmegaConf node read back from a file or a database (not resolved:
            interpolations are read as written).
        source: where it came from, for the message (``ckpt_path=.../last.ckpt's saved config``).
        trust: the user trusts the file: nothing is checked.
        bypass: the setting that trusts it, named in the message.
        resolved: ``config`` was saved resolved, so an interpolation in it is planted and refused
            (False for a config composed from conf/, whose interpolations are its own).

    Raises:
        UntrustedConfig: one line naming the key path, the target and ``bypass``.
    """
    if trust or config is None:
        return
    if OmegaConf.is_config(config):
        config = OmegaConf.to_container(config, resolve=False)
    for key, value, reason in untrusted(config):
        if not resolved and reason == INTERPOLATION:
            continue
        raise UntrustedConfig(
            f"{source} names {key}={value!r}, {reason}: only {ALLOWED_TEXT} are loaded from a file; "
            f"set {bypass} only if you trust where it came from"
        )


def untrusted(node: Any, path: str = "") -> Iterator[tuple[str, Any, str]]:
    """Every ``(key path, value, why)`` in ``node`` that may not be instantiated: a ``_target_``
    outside the allow-list (and the ``path`` of a ``hydra.utils.get_class`` node, a target too),
    or an interpolation, which could build a config at resolution time (``${oc.create:...}``):
    the configs a run saves are resolved, so they hold none."""
    if isinstance(node, dict):
        if node.get("_target_") == GET_CLASS and set(node) != {"_target_", "path"}:
            # get_class(*_args_) would name its class unchecked (subprocess.Popen, called by SAM).
            yield _join(path, "_target_"), GET_CLASS, "given more than its path"
        if "_target_" in node:
            named = [("_target_", node["_target_"])]
            if node["_target_"] == GET_CLASS:
                named.append(("path", node.get("path")))
            for key, target in named:
                reason = refusal(target)
                if reason is not None:
                    yield _join(path, key), target, reason
        for key, value in node.items():
            yield from untrusted(value, _join(path, str(key)))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from untrusted(value, f"{path}[{index}]")
    elif isinstance(node, str) and "${" in node:
        yield path, node, INTERPOLATION


def refusal(target: Any) -> str | None:
    """Why ``target`` is not allowed, or None when it is. Only allowed packages are imported."""
    if target == GET_CLASS:
        return None  # its path is checked as a target of its own
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        return "not a dotted path of public Python names"
    if not _within(target, CLASS_PACKAGES):
        return "outside the allowed packages"
    try:
        obj = _locate(target)
    except Exception:  # noqa: BLE001 - whatever import or lookup fails, the target is not ours
        return "which cannot be imported"
    # Judge what it is, not how it is spelled: a re-export (pyramid_lab.evaluate.np.load) is refused.
    module = getattr(obj, "__module__", None) or ""
    if inspect.isclass(obj) and _within(module, CLASS_PACKAGES):
        return None
    if inspect.isfunction(obj) and _within(module, FUNCTION_PACKAGES):
        return None
    kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else type(obj).__name__
    return f"a {kind} of {module or 'an unknown module'}"


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
