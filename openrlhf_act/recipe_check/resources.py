"""The Ray resources a stage asks for and the cluster its driver will join: ``recipe check --cluster NxG``
holds a stage to a described cluster, the preflight to the real one, waiting a bounded time for the
resources to be free (OpenRLHF's own ``ray.get(pg.ready())`` would wait forever)."""

from __future__ import annotations

import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openrlhf_act.recipe_check.static_checks import arg_value


@dataclass(frozen=True)
class Need:
    """The Ray resources a ``train_ppo_ray`` command asks for (read from its ``train()``: one
    ``{"GPU": 1, "CPU": 1}`` bundle per GPU of each role, colocated roles sharing the actor's bundles,
    and one CPU for the PPOTrainer actor that drives them)."""

    gpus: int
    cpus: int
    roles: str


def ray_need(args: Any) -> Need:
    actor = arg_value(args, "actor.num_nodes") * arg_value(args, "actor.num_gpus_per_node")
    ref = (
        arg_value(args, "ref.num_nodes") * arg_value(args, "ref.num_gpus_per_node")
        if arg_value(args, "algo.kl.init_coef") > 0
        else 0
    )
    engines = (arg_value(args, "vllm.num_engines") or 0) * (arg_value(args, "vllm.tensor_parallel_size") or 1)
    critic = arg_value(args, "critic.num_nodes") * arg_value(args, "critic.num_gpus_per_node")
    critic = critic if arg_value(args, "critic.model_name_or_path") else 0
    reward = (
        0
        if arg_value(args, "reward.remote_url")
        else arg_value(args, "reward.num_nodes") * arg_value(args, "reward.num_gpus_per_node")
    )
    if arg_value(args, "train.colocate_critic_reward"):
        critic, reward = max(critic, reward), 0
    if arg_value(args, "train.colocate_all") and not arg_value(args, "train.async_enable"):
        parts = {"actor, reference and vLLM engines (colocated)": actor, "critic and reward": critic + reward}
    else:
        if arg_value(args, "train.colocate_actor_ref") or arg_value(args, "train.colocate_all"):
            actor, ref = max(actor, ref), 0
        parts = {"actor": actor, "reference": ref, "vLLM engines": engines, "critic": critic, "reward": reward}
    parts = {name: n for name, n in parts.items() if n}
    total = sum(parts.values())
    return Need(total, total + 1, " + ".join(f"{name} {n}" for name, n in parts.items()))


def cluster_findings(args: Any, nodes: int, gpus_per_node: int) -> list[str]:
    """``recipe check --cluster NxG``: the stage's GPUs against the cluster described."""
    need, have = ray_need(args), nodes * gpus_per_node
    if need.gpus > have:
        return [
            f"the stage asks Ray for {need.gpus} GPUs ({need.roles}) but the cluster {nodes}x{gpus_per_node} has "
            f"{have}: set COLOCATE=1 (roles share GPUs) or fewer GPUS_PER_NODE / VLLM_ENGINES"
        ]
    return []


def ray_address() -> str | None:
    """The cluster ``ray.init()`` in the driver will join, resolved by Ray's own code: RAY_ADDRESS, else
    the address file of the latest ``ray start`` on this machine; None: it would start a fresh local
    instance (no GPUs where none are detected)."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None)


def check_ray_cluster(need: Need, wait_s: float, *, poll_s: float = 2.0) -> str | None:
    """Join the driver's cluster and wait up to ``wait_s`` for ``need`` to be free; the problem, or None."""
    import ray

    address = ray_address()
    if address is None:
        return (
            "no Ray cluster to join: train_ppo_ray's ray.init() would start a fresh local instance, without the "
            f"{need.gpus} GPU(s) this stage asks for where none are detected: let the recipe start its own head "
            "(unset RAY_ADDRESS) or set RAY_ADDRESS to a running cluster"
        )
    host, _, port = address.rpartition(":")
    try:  # ray.init retries an address where nothing listens without end
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        return (
            f"nothing answers at the Ray cluster address {address} ({exc}): a stale RAY_ADDRESS or a stopped head; "
            "unset RAY_ADDRESS (the recipe then starts its own head) or start that cluster"
        )
    with warnings.catch_warnings():  # Ray's notes about accelerator variables concern workers, not this probe
        warnings.simplefilter("ignore")
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    try:
        return _wait_for(need, address, ray.cluster_resources, ray.available_resources, wait_s, poll_s)
    finally:
        ray.shutdown()


def _wait_for(
    need: Need,
    address: str,
    total: Callable[[], dict[str, float]],
    free: Callable[[], dict[str, float]],
    wait_s: float,
    poll_s: float,
) -> str | None:
    asked = {"GPU": need.gpus, "CPU": need.cpus}
    have = total()
    short = {k: v for k, v in asked.items() if have.get(k, 0) < v}
    if short:
        return (
            f"the Ray cluster at {address} has {_amounts(have, short)}, this stage asks for {_amounts(asked, short)} "
            f"({need.roles}): stop that cluster or point RAY_ADDRESS at one that has them (or unset it: the recipe "
            "then starts its own head), or ask for less (GPUS_PER_NODE, VLLM_ENGINES, COLOCATE=1)"
        )
    deadline = time.monotonic() + wait_s
    while True:
        available = free()
        busy = {k: v for k, v in asked.items() if available.get(k, 0) < v}
        if not busy:
            return None
        if time.monotonic() >= deadline:
            return (
                f"after RESOURCE_WAIT_S={wait_s:g} s the Ray cluster at {address} still has only "
                f"{_amounts(available, busy)} free, this stage asks for {_amounts(asked, busy)} ({need.roles}): "
                "other work holds them; wait for it, stop it, or raise RESOURCE_WAIT_S"
            )
        time.sleep(poll_s)


def _amounts(resources: dict[str, float], names: dict[str, float]) -> str:
    return " and ".join(f"{resources.get(name, 0):g} {name}(s)" for name in names)
