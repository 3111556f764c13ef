"""The job's progress and timing: labelled rows and the ETA in the log (:class:`Progress`), when
each stage of the start ended (:class:`Timeline`) and each actor's start-up (:func:`actor_startup`),
all reported in ``_run.json``'s ``run``."""

from __future__ import annotations

import collections
import logging
import math
import os
import time

from m2fp_batch.pipeline.schedule import Plan, Pool
from m2fp_batch.pipeline.summary import PipelineInfo, RunInfo, utc_now
from m2fp_batch.pipeline.worker import ActorStartup

__all__ = ["Progress", "Timeline", "actor_startup"]

log = logging.getLogger("m2fp_batch.job")


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts labelled rows and finished inputs (a video is one input of many rows) and logs progress
    every ``interval`` seconds."""

    def __init__(self, plan: Plan, interval: float) -> None:
        self.plan, self.interval = plan, interval
        self.labelled = 0
        self.inputs = 0
        self.t_pipe = self.last_log = time.time()
        self.first_at: float | None = None
        self.first_rows = 0

    def add(self, rows: int, inputs: int) -> None:
        if self.first_at is None:
            self.first_at, self.first_rows = time.time(), rows
        self.labelled += rows
        self.inputs += inputs
        now = time.time()
        if now - self.last_log < self.interval:
            return
        self.last_log = now
        rate, input_rate = self.labelled / (now - self.t_pipe), self.inputs / (now - self.t_pipe)
        done, total = self.plan.done_before + self.inputs, self.plan.total
        eta = _fmt_eta((total - done) / input_rate if input_rate else float("inf"))
        log.info(
            "progress: %d/%d inputs (%.1f%%), %d rows, %.2f rows/s, ETA %s",
            done, total, 100.0 * done / total, self.labelled, rate, eta,
        )  # fmt: skip

    def run_info(
        self,
        started: float,
        pool: Pool,
        loads: dict[str, int],
        address: str,
        timeline: Timeline,
        actors: dict,
        driver_s: dict[str, float],
    ) -> RunInfo:
        end = time.time()
        seconds, n, first_at = end - started, self.labelled, self.first_at
        steady_s = end - first_at if first_at else 0.0
        steady = n > self.first_rows and steady_s > 0
        pipeline = PipelineInfo(
            ray_start_s=round(self.t_pipe - started, 3),
            first_rows_after_s=round(first_at - self.t_pipe, 3) if first_at else None,
            steady_images_per_s=round((n - self.first_rows) / steady_s, 4) if steady else None,
            actors_max=pool.actors,
            torch_threads=pool.threads,
            model_loads_per_node=loads,
            ray_address=address,
            pid=os.getpid(),
            startup=timeline.seconds(),
            actor_startup=actors,
            driver_s={k: round(v, 3) for k, v in driver_s.items()},
        )
        rate = round(n / seconds, 4) if seconds else None
        return RunInfo(utc_now(started), n, round(seconds, 3), rate, pipeline)


class Timeline:
    """When each stage of the job's start ended, in seconds since the job began (``_run.json``'s
    ``run.startup``): ``model_resolved``, ``listed``, ``planned``, ``connected`` (Ray),
    ``pipeline_started``, ``first_actor_ready``, ``all_actors_ready``, ``first_row``."""

    def __init__(self) -> None:
        self.began = time.time()
        self.at: dict[str, float] = {}

    def mark(self, stage: str, when: float | None = None) -> None:
        self.at.setdefault(stage, time.time() if when is None else when)

    def seconds(self) -> dict[str, float]:
        return {k: round(v - self.began, 3) for k, v in sorted(self.at.items(), key=lambda kv: kv[1])}


def actor_startup(startups: list[ActorStartup], timeline: Timeline) -> dict[str, list[dict]]:
    """Per node, each actor's start-up in seconds: ``process_s`` (from the pipeline's start until
    the actor's process begins importing the job's code: scheduling and process start),
    ``import_s`` (the job's code, torch, the engine), ``model_load_s`` (sha256 check included),
    ``startup_s`` (their total) and ``ready_s`` (since the job began)."""
    base = timeline.at.get("pipeline_started", timeline.began)
    per_node: dict[str, list[dict]] = collections.defaultdict(list)
    for s in sorted(startups, key=lambda s: s.ready_at):
        per_node[s.node].append({
            "pid": s.pid,
            "process_s": round(s.imports_at - base, 3),
            "import_s": round(s.import_s, 3),
            "model_load_s": round(s.model_load_s, 3),
            "startup_s": round(s.ready_at - base, 3),
            "ready_s": round(s.ready_at - timeline.began, 3),
        })  # fmt: skip
    if startups:
        timeline.mark("first_actor_ready", min(s.ready_at for s in startups))
        timeline.mark("all_actors_ready", max(s.ready_at for s in startups))
    return dict(per_node)
