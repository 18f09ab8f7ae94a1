"""Rollout layouts that cannot hang, proven by OpenRLHF's own dispatch code.

Each GRPO step, OpenRLHF cuts the accepted samples into micro-batches
(``RemoteExperienceMaker.split_rollout_samples``) and deals them to the actor (and reference) ranks in
chunks (``RayActorGroup.async_run_method_batch``). A rank that gets fewer micro-batches or samples than
another leaves ZeRO-3 gathers and per-step all-reduces waiting until the NCCL timeout; fewer
micro-batches than ranks raise "Insufficient batch size". Dynamic filtering (or a data size that is no
multiple of the rollout batch) makes the number of accepted prompt groups of an episode's last step
anything from 1 to the rollout batch, so every one of those sizes must deal evenly.

These functions and ``BaseModelActor.execute_batch`` (what a rank runs on its chunk) run from the
installed source (compiled from the AST; nothing of torch or Ray is imported) with stand-ins: samples
that are plain objects, a ``ray.put`` that returns its argument and actor handles whose
``execute_batch.remote`` runs ``execute_batch`` with a ``forward`` that records each micro-batch.
"""

from __future__ import annotations

import ast
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from openrlhf_act.recipe_check.openrlhf_main import openrlhf_root

_SPLIT = ("trainer/ppo_utils/experience_maker.py", "RemoteExperienceMaker", "split_rollout_samples")
_DEAL = ("trainer/ray/launcher.py", "RayActorGroup", "async_run_method_batch")
_RUN = ("trainer/ray/launcher.py", "BaseModelActor", "execute_batch")


class _MicroBatch(list):
    """What ``Experience.concat_experiences`` returns here: the samples it was given."""


class _Experience:
    @staticmethod
    def concat_experiences(samples: list[Any], pad_token_id: int) -> _MicroBatch:
        return _MicroBatch(samples)


class _Sample:
    """A rollout sample: OpenRLHF only numbers it (``sample.index``) before the split."""

    index: list[int]


class _Rank:
    """An actor handle: ``execute_batch.remote`` runs OpenRLHF's ``execute_batch`` on the chunk, whose
    ``forward`` calls (one per micro-batch) are recorded."""

    def __init__(self) -> None:
        self.received: list[_MicroBatch] = []
        self.strategy = types.SimpleNamespace(is_rank_0=lambda: False)
        self.execute_batch = types.SimpleNamespace(remote=lambda *args: _method(*_RUN)(self, *args))

    def forward(self, samples: _MicroBatch) -> None:
        self.received.append(samples)


@cache
def _method(relative: str, cls: str, name: str) -> Callable[..., Any]:
    """OpenRLHF's ``cls.name`` compiled from the installed source, with stand-ins for its module globals."""
    root = openrlhf_root()
    if root is None:
        raise LookupError("OpenRLHF is not installed")
    path = root / relative
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    item.decorator_list = []
                    code = compile(ast.Module(body=[item], type_ignores=[]), str(path), "exec")
                    namespace: dict[str, Any] = {
                        "ray": types.SimpleNamespace(put=lambda value: value),
                        "Experience": _Experience,
                        "tqdm": lambda iterable, **_: iterable,
                    }
                    exec(code, namespace)
                    return namespace[name]
    raise LookupError(f"the installed OpenRLHF has no {cls}.{name} in {relative}")


@dataclass(frozen=True)
class Deal:
    """What each rank got for one step of ``groups`` accepted prompt groups, or OpenRLHF's error."""

    groups: int
    micro_batches: tuple[int, ...] = ()  # per rank
    samples: tuple[int, ...] = ()  # per rank
    error: str = ""

    @property
    def even(self) -> bool:
        return not self.error and len(set(self.micro_batches)) == 1 and len(set(self.samples)) == 1

    def describe(self) -> str:
        what = self.error or f"micro-batches per rank {list(self.micro_batches)}, samples {list(self.samples)}"
        return f"{self.groups} group(s): {what}"


def deal(groups: int, group_size: int, micro_batch: int, ranks: int, duplicate: int = 1) -> Deal:
    """One step through OpenRLHF's own split and dispatch: ``ranks`` actor handles (``duplicate`` of them
    share each chunk: ring attention x tensor parallel)."""
    args = types.SimpleNamespace(
        train=types.SimpleNamespace(dynamic_batch_enable=False),
        rollout=types.SimpleNamespace(micro_batch_size=micro_batch),
    )
    maker = types.SimpleNamespace(args=args, tokenizer=types.SimpleNamespace(pad_token_id=0))
    samples = [_Sample() for _ in range(groups * group_size)]
    micro_batches = _method(*_SPLIT)(maker, samples)
    handles = [_Rank() for _ in range(ranks)]
    group = types.SimpleNamespace(_actor_handlers=handles, duplicate_actors=duplicate)
    try:
        _method(*_DEAL)(group, method_name="forward", samples=micro_batches)
    except ValueError as exc:
        return Deal(groups, error=str(exc))
    counts = tuple(len(h.received) for h in handles)
    sizes = tuple(sum(len(batch) for batch in h.received) for h in handles)
    return Deal(groups, counts, sizes)


@cache
def uneven_steps(rollout_batch: int, group_size: int, micro_batch: int, ranks: int, duplicate: int = 1) -> list[Deal]:
    """The step sizes (1 to ``rollout_batch`` accepted groups) that do not deal evenly."""
    steps = (deal(g, group_size, micro_batch, ranks, duplicate) for g in range(1, rollout_batch + 1))
    return [d for d in steps if not d.even]


def working_settings(rollout_batch: int, group_size: int, ranks: int, duplicate: int = 1) -> str:
    """Settings that deal evenly on this layout, checked the same way: the largest micro rollout batch
    for this group size, else the smallest larger group size that has one; "" when none up to 8 x ranks."""
    for size in range(group_size, 8 * ranks + 1):
        micro = [m for m in range(size, 0, -1) if _deals_evenly(rollout_batch, size, m, ranks, duplicate)]
        if micro:
            return (
                f"MICRO_ROLLOUT_BATCH={micro[0]}"
                if size == group_size
                else f"GROUP_SIZE={size} MICRO_ROLLOUT_BATCH={micro[0]}"
            )
    return ""


@cache
def _deals_evenly(rollout_batch: int, group_size: int, micro_batch: int, ranks: int, duplicate: int) -> bool:
    return all(deal(g, group_size, micro_batch, ranks, duplicate).even for g in range(1, rollout_batch + 1))


def rollout_layout_problems(args: Any) -> list[str]:
    """Why a ``train_ppo_ray`` command's rollout layout can hang, with the settings that would work; [] when
    every last-step size deals evenly over the actor (and reference) ranks."""
    if args.train.dynamic_batch_enable:  # OpenRLHF then cuts a multiple of the ranks itself
        return []
    duplicate = args.ds.ring_attn_size * args.ds.tensor_parallel_size
    roles = {"actor": args.actor.num_nodes * args.actor.num_gpus_per_node}
    if args.algo.kl.init_coef > 0:
        roles["reference"] = args.ref.num_nodes * args.ref.num_gpus_per_node
    batch, size, micro = args.rollout.batch_size, args.rollout.n_samples_per_prompt, args.rollout.micro_batch_size
    problems = []
    for ranks, names in _by_value(roles).items():
        bad = uneven_steps(batch, size, micro, ranks, duplicate)
        if not bad:
            continue
        fix = working_settings(batch, size, ranks, duplicate)
        problems.append(
            f"{len(bad)} of {batch} possible last-step sizes (1-{batch} prompt groups of {size} samples, micro-batches "
            f"of {micro}) deal unevenly over the {ranks} {' and '.join(names)} ranks in OpenRLHF's "
            f"async_run_method_batch, e.g. {bad[0].describe()}; a rank with fewer micro-batches leaves the others "
            f"waiting in ZeRO-3 gathers and all-reduces until the NCCL timeout (dynamic filtering and the data size "
            f"make the last step's size vary): "
            + (f"set {fix}" if fix else "change GROUP_SIZE, MICRO_ROLLOUT_BATCH or the number of GPUs")
        )
    return problems


def _by_value(roles: dict[str, int]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for name, ranks in roles.items():
        grouped.setdefault(ranks, []).append(name)
    return grouped
