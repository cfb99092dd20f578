"""What a killed release leaves behind, and the lock that lets the next one clean it up.

Every action on an environment (deploy, promote, rollback, down) holds the store lock
``deploy:<pipeline>:<env>`` (:func:`environment_lock`). The lock records its process and a
heartbeat (:mod:`cd4ml.store.liveness`), so when ``cd4ml deploy`` is killed (kill -9, a cancelled
CI job) the next action takes the lock over at once and says so, instead of waiting for it to
expire; a waiter behind a live holder says who it waits for and since when.

Holding the lock, the action first cleans up what a dead one left (:func:`clean_up`): a
deployment record still ``in_progress`` (only a holder of the lock writes one, so it belongs to
a process that is gone) is marked ``failed`` with the reason, and the target removes the model
containers of the environment that serve nothing (:meth:`Target.remove_orphans`: only cd4ml's
own, found by the environment's labels).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cd4ml.events import StageProgress, StageWarning, emit
from cd4ml.states import DeploymentStatus

if TYPE_CHECKING:
    from cd4ml.release.targets import Target
    from cd4ml.spec import EnvironmentSpec, Spec
    from cd4ml.store import Lock, Store

#: how many of an environment's newest deployment records are checked for unfinished ones
_RECENT = 20


@dataclass(frozen=True)
class Leftovers:
    """What :func:`clean_up` found and cleaned: deployment ids marked failed, containers removed."""

    failed: tuple[int, ...] = ()
    removed: tuple[str, ...] = ()


def lock_name(spec: Spec, env: EnvironmentSpec) -> str:
    return f"deploy:{spec.name}:{env.name}"


@contextmanager
def environment_lock(store: Store, spec: Spec, env: EnvironmentSpec, who: str, target: Target,
                     stage: str) -> Iterator[Leftovers]:
    """Hold ``env``'s deploy lock for the block, taking it over from a holder that is gone,
    then clean up what a dead action left there; yields what was cleaned."""

    def waiting(held: Lock) -> None:
        emit(StageProgress(stage, f"waiting for {env.name}: its deploy lock is held by {held.who}"))

    def taken(held: Lock) -> None:
        emit(StageWarning(stage, f"{env.name}: the deploy lock was held by {held.who}, whose "
                                 "process is gone: taken over"))

    with store.lock(lock_name(spec, env), f"{who}@{socket.gethostname()}:{os.getpid()}",
                    on_wait=waiting, on_takeover=taken):
        yield clean_up(store, spec, env, target, stage)


def clean_up(store: Store, spec: Spec, env: EnvironmentSpec, target: Target, stage: str) -> Leftovers:
    """Mark failed the deployments of ``env`` a dead action left in progress and remove the
    model containers that serve nothing; call it holding the environment's lock."""
    failed = []
    for dep in store.deployments(spec.name, env.name, limit=_RECENT):
        if dep.status != DeploymentStatus.IN_PROGRESS:
            continue
        why = (f"abandoned: the {dep.action} of version id {dep.model_version_id} started at "
               f"{dep.started_at} by {dep.actor or 'someone'} never finished (its process is gone)")
        store.finish_deployment(dep.id, DeploymentStatus.FAILED, details={"error": why})
        _end_running_steps(store, dep.id)
        emit(StageWarning(stage, f"{env.name}: deployment {dep.id} was left in progress by an "
                                 "action that is gone: marked failed"))
        failed.append(dep.id)
    current = store.current_deployment(spec.name, env.name)
    keep = {str(current.details.get("container"))} if current and current.details.get("container") else set()
    removed = target.remove_orphans(spec, env, keep=keep, anything_current=current is not None)
    if removed:
        emit(StageWarning(stage, f"{env.name}: removed {len(removed)} container(s) a dead action "
                                 f"left behind: {', '.join(removed)}"))
    return Leftovers(tuple(failed), tuple(removed))


def _end_running_steps(store: Store, deployment_id: int) -> None:
    """A canary or shadow step the dead release was running never ended: aborted, not running."""
    from cd4ml.states import StepStatus

    for step in store.deployment_steps(deployment_id):
        if step.status == StepStatus.RUNNING:
            name = (step.details or {}).get("name") or f"{step.kind} {step.weight}%"
            store.finish_step(step.id, StepStatus.ABORTED, details={
                **step.details, "summary": f"{name}: abandoned (its process is gone)"})
