"""``m2fp-batch evaluate``: mIoU overall, per class and per skin-tone group on labelled dirs."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from m2fp_batch.settings import EngineSettings, add_engine_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="job output, export-reviewed or CIHP dirs, COCO .json files",
    )
    p.add_argument("--json", default=None, help="also write the numbers (the JSON printed on stdout) to this file")
    p.add_argument("--human", action="store_true", help="print a table (mIoU per group and class) instead of JSON")
    p.add_argument(
        "--compare", default=None, metavar="OTHER_MODEL", help="evaluate another model too (same engine settings)"
    )
    # The photos are read through the labelled dirs' own guards, so no decode-guard flags here.
    add_engine_arguments(p, guards=False, threads_help="torch threads (default: torch's choice)")


def _fmt(x) -> str:
    return "   -  " if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:6.2f}"


def sources_line(result: dict) -> str:
    """How the people's skin-tone groups were obtained (the same data for every model)."""
    counts = result["skin_tone_sources"]
    parts = ", ".join(f"{v} {k}" for k, v in counts.items())
    return f"skin-tone groups of {sum(counts.values())} people: {parts} (derived: from the ground-truth skin parts)"


def render(names: list[str], results: list[dict]) -> str:
    """The table: overall, per group (mIoU, gap to the best), per class; one column per model."""
    lines = [f"{'':22}" + "".join(f"{n[-24:]:>26}" for n in names)]
    lines.append(f"{'images':22}" + "".join(f"{r['images']:>26}" for r in results))
    lines.append(f"{'mIoU (all)':22}" + "".join(f"{_fmt(r['mIoU']):>26}" for r in results))
    groups = [g["group"] for g in results[0]["by_group"]]
    for g in groups:
        cells = []
        for r in results:
            row = next((x for x in r["by_group"] if x["group"] == g), None)
            cells.append(f"{_fmt(row and row['mIoU'])} gap {_fmt(row and row['gap'])}" if row else "-")
        lines.append(f"{'group ' + g:22}" + "".join(f"{c:>26}" for c in cells))
    for cls in results[0]["per_class"]:
        lines.append(f"{'  ' + cls:22}" + "".join(f"{_fmt(r['per_class'][cls]):>26}" for r in results))
    lines.append(sources_line(results[0]))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from torch.utils.data import ConcatDataset

    from m2fp_batch.data import ParsingDataset
    from m2fp_batch.inference import M2FPParser
    from m2fp_batch.inference.device import resolve_device
    from m2fp_batch.train.evaluate import evaluate_parser

    settings = EngineSettings.from_args(args)
    resolve_device(settings.device)  # one sentence before the data is read when CUDA is absent
    parts = [ParsingDataset(d) for d in args.data]
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    models = [settings.model] + ([args.compare] if args.compare else [])
    results = []
    for m in models:
        engine = dataclasses.replace(settings, model=m)
        parser = M2FPParser.from_settings(engine)
        results.append(evaluate_parser(parser, dataset, engine).to_dict(parser.class_names))
    payload = {"data": args.data, "short_edge": settings.short_edge, "models": dict(zip(models, results))}
    print(render(models, results) if args.human else json.dumps(payload))
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0
