#!/usr/bin/env python
"""Per-stage speed, efficiency against the measured matmul peak, and peak memory of the engine.

    python benchmarks/bench_inference.py [--model DIR] [--threads 2] [--repeats 3] [--json out.json]

Without --model it builds the parity fixture's full-size seed-3 checkpoint (same architecture
and cost as the real M2FP weights) with shared/reference/gen_checkpoint.py. In one run it
measures: the machine's fp32 matmul peak (2048^2 torch.mm, same thread count), per-stage
times on a 640x640-input photo (decode, preprocess, backbone, pixel decoder, transformer
decoder, postprocess), the model FLOPs (torch FlopCounterMode), model efficiency =
FLOPs / (forward time x peak), end to end images/s against the bare model loop, and the
peak RSS of a fresh process parsing an 1800x1536 JPEG and a 24-megapixel JPEG. Then
(``--interleave N``) the engines default / ``--fast-backbone`` / ``--compile`` timed in turn for
N rounds with the peak measured in every round: the comparison that holds on a VM whose speed
drifts between minutes.

End-to-end efficiency = model FLOPs / (``parse_one`` time from JPEG bytes x peak): what
``m2fp-batch parse`` does per photo, against the machine's fp32 matmul peak.

Levers, each measured in the same run as one on/off pair (end-to-end ``parse_one`` time;
for the postprocess, the postprocess alone on the same network outputs):
  BatchNorm folding + channels-last   (--fast-backbone) vs the official op order (default)
  embedding_bag sampling core          (default) vs the grid_sample reference core
  box-limited separable postprocess    (default) vs all 100 masks upsampled at full size
  torch.compile (inductor, CPU)        (--compile) vs eager; its first call (compile) reported
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "decode",
    "preprocess",
    "backbone",
    "pixel_decoder",
    "transformer_decoder",
    "postprocess",
    "end_to_end",
    "forward",
)
sys.path.insert(0, str(REPO / "tests"))


def matmul_peak(threads: int, n: int = 2048, repeats: int = 10) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def photo_bytes(h: int, w: int, quality: int = 92) -> bytes:
    """A real photo (scikit-image astronaut) resized to (h, w), as JPEG bytes."""
    from skimage import data

    im = Image.fromarray(data.astronaut()).resize((w, h), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# The largest photo the job accepts by default: 89.47 Mpx, under DEFAULT_MAX_PIXELS (89,478,485).
LARGEST = (7728, 11578)
MEMORY_PROBES = {
    "1800x1536": [(1800, 1536)],
    "24mp_6000x4000": [(4000, 6000)],
    "largest_7728x11578": [LARGEST],
    "actor_batch": [(4000, 6000), LARGEST, (640, 640), LARGEST],  # one batch of 4, as an actor gets it
}


# One actor call in a fresh process: the job's Labeler (decode, engine, rows) over one batch of
# the given JPEGs, with the default job settings (batch_size 4, forward_batch 1). VmHWM is the
# peak RSS of this process image (ru_maxrss would carry the parent's peak over exec).
ACTOR_CODE = """
import sys, time
import pyarrow as pa
from m2fp_batch.pipeline.config import JobSettings
from m2fp_batch.pipeline.worker import Labeler
from m2fp_batch.schema import SCHEMA
from m2fp_batch.settings import EngineSettings

def hwm():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 1024

model, engine, threads, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
cfg = JobSettings(input="x", output="y", engine=EngineSettings(model=model, engine=engine))
labeler = Labeler(cfg, SCHEMA, None, threads=threads)
base = hwm()
n = len(files)
batch = pa.table({
    "image_id": [str(i) for i in range(n)], "uri": files, "shard": pa.array([0] * n, pa.int32()),
    "data": pa.array([open(f, "rb").read() for f in files], pa.large_binary()),
    "read_error": pa.array([None] * n, pa.string()), "read_error_kind": pa.array([None] * n, pa.string()),
    "read_s": [0.0] * n,
})
t = time.perf_counter()
rows = labeler(batch).to_pylist()
print(base, hwm(), time.perf_counter() - t, sum(r["status"] == "ok" for r in rows))
"""


def memory_probe(model: str, sizes: list[tuple[int, int]], threads: int, engine: str = "torch") -> dict:
    """Peak RSS of one actor call over h x w JPEGs (:data:`ACTOR_CODE`), in a fresh process."""
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, (h, w) in enumerate(sizes):
            files.append(os.path.join(d, f"{i}.jpg"))
            with open(files[-1], "wb") as f:
                f.write(photo_bytes(h, w))
        cmd = [sys.executable, "-c", ACTOR_CODE, model, engine, str(threads), *files]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    after_load, peak, secs, ok = out.stdout.split()
    return {
        "images_hw": [list(s) for s in sizes],
        "ok_rows": int(ok),
        "peak_rss_mib": round(float(peak), 1),
        "rss_after_model_load_mib": round(float(after_load), 1),
        "seconds": round(float(secs), 2),
    }


def parse_time(parser, jpeg: bytes, repeats: int) -> float:
    """Median seconds of ``parse_one(decode_image(Path(jpeg).read_bytes()))`` after one warm-up call."""
    from m2fp_batch.decode import decode_image

    parser.parse_one(decode_image(Path(jpeg).read_bytes()))
    return statistics.median(
        _time(lambda: parser.parse_one(decode_image(Path(jpeg).read_bytes()))) for _ in range(repeats)
    )


def _row(lever: str, on: float, off: float, note: str = "") -> dict:
    return {"lever": lever, "on_s": round(on, 3), "off_s": round(off, 3), "gain_s": round(off - on, 3),
            "speedup": round(off / on, 3), "note": note}  # fmt: skip


def measure_levers(parser, model: str, jpeg: bytes, args, flops: float, peak: float) -> list[dict]:
    """Each lever on/off in this run (see the module docstring)."""
    from inference.test_postprocess import official_dense

    from m2fp_batch.decode import decode_image
    from m2fp_batch.inference import M2FPParser
    from m2fp_batch.inference import preprocess as pp
    from m2fp_batch.inference.postprocess import parse_instances
    from m2fp_batch.model.ms_deform_attn import MSDeformAttn
    from m2fp_batch.resize import target_size

    rows = []
    base = parse_time(parser, jpeg, args.repeats)
    other = M2FPParser.from_pretrained(model, threads=args.threads, fast_backbone=not parser.channels_last)
    t_other = parse_time(other, jpeg, args.repeats)
    on, off = (base, t_other) if parser.channels_last else (t_other, base)
    rows.append(_row("BatchNorm folding + channels-last", on, off))
    del other
    attn = [m for m in parser.model.modules() if isinstance(m, MSDeformAttn)]
    for m in attn:
        m.naive = True
    naive = parse_time(parser, jpeg, args.repeats)
    for m in attn:
        m.naive = False
    rows.append(_row("embedding_bag sampling core (vs grid_sample)", base, naive))
    img = decode_image(Path(jpeg).read_bytes())
    size = target_size(*img.shape[:2])
    net = parser.model
    batch = pp.to_batch([pp.resize(img, size)], net.pixel_mean, net.pixel_std, net.size_divisibility)
    out = parser.forward(batch)
    lg, masks = out["pred_logits"][0], out["pred_masks"][0]
    cfg = parser.config
    post = statistics.median(
        _time(lambda: parse_instances(lg, masks, size, img.shape[:2], cfg.num_parsing, cfg.parsing_ins_score_thr))
        for _ in range(args.repeats)
    )
    dense = statistics.median(
        _time(lambda: official_dense(lg, masks, size, img.shape[:2], cfg.num_parsing, cfg.parsing_ins_score_thr))
        for _ in range(args.repeats)
    )
    rows.append(_row("box-limited separable postprocess (vs dense)", post, dense, "postprocess alone"))
    if not args.no_compile:
        t0 = time.perf_counter()
        comp = M2FPParser.from_pretrained(model, threads=args.threads, torch_compile=True)
        comp.parse_one(img)
        first = time.perf_counter() - t0
        on = parse_time(comp, jpeg, args.repeats)
        rows.append(
            _row("torch.compile backbone + pixel decoder", on, base,
                 f"first call incl. load + compile {first:.1f} s; compiled={comp.compiled}; "
                 f"efficiency with it {flops / (on * peak):.3f}")
        )  # fmt: skip
    return rows


def interleaved(parser, model: str, jpeg: bytes, args, flops: float) -> dict:
    """Engines (default, --fast-backbone, --compile) timed in turn, round after round, in this
    process, with the matmul peak measured in every round: on a VM whose speed drifts from
    minute to minute this is the comparison that holds. Efficiency uses the highest peak seen."""
    from m2fp_batch.decode import decode_image
    from m2fp_batch.inference import M2FPParser

    other = M2FPParser.from_pretrained(model, threads=args.threads, fast_backbone=not parser.channels_last)
    engines = (
        {"fast_backbone": parser, "default": other}
        if parser.channels_last
        else {"default": parser, "fast_backbone": other}
    )
    if not args.no_compile:
        engines["compile"] = M2FPParser.from_pretrained(model, threads=args.threads, torch_compile=True)
    for parser in engines.values():
        parser.parse_one(decode_image(Path(jpeg).read_bytes()))  # warm-up (and the compile)
    times: dict[str, list[float]] = {k: [] for k in engines}
    peaks = []
    for _ in range(args.interleave):
        for name, parser in engines.items():
            times[name].append(_time(lambda p=parser: p.parse_one(decode_image(Path(jpeg).read_bytes()))))
        peaks.append(matmul_peak(args.threads))
    peak = max(peaks)
    return {
        "rounds": args.interleave,
        "matmul_peak_gflops_per_round": [round(x / 1e9, 1) for x in peaks],
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "end_to_end_efficiency": {k: round(flops / (statistics.median(v) * peak), 3) for k, v in times.items()},
    }


def lever_table(rows: list[dict]) -> str:
    lines = ["| lever | on (s) | off (s) | gain (s) | speedup | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['lever']} | {r['on_s']:.3f} | {r['off_s']:.3f} | {r['gain_s']:+.3f} | {r['speedup']:.2f}x | {r['note']} |"
        )
    return "\n".join(lines)


HAS_BF16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text()
PRECISION_NOTE = (
    "agreement with fp32 on random seeded weights shows that the lower-precision graph runs and how often "
    "its labels flip where random logits sit near every threshold (a pessimistic bound); it does not show the "
    "accuracy of trained weights, whose logits are far from the thresholds: measure that on your own photos."
)

# --- engines (issue 19): torch / onnxruntime / openvino, interleaved -------------------------
# FLOPs of one forward at 640x640 as the reference README states them (FlopCounterMode on the
# official network): the efficiency definition.
REFERENCE_GFLOPS_640 = 288.0

ENGINE_RSS_CODE = """
import sys, time
from pathlib import Path
from m2fp_batch.decode import decode_image
from m2fp_batch.inference import M2FPParser

def hwm():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) / 1024

model, engine, threads, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
parser = M2FPParser.from_pretrained(model, engine=engine, threads=threads)
base = hwm()
for f in files:
    parser.parse_one(decode_image(Path(f).read_bytes()))
print(base, hwm())
"""


def engine_rss(model: str, engine: str, threads: int, sizes: list[tuple[int, int]]) -> dict:
    """Peak RSS of a fresh process that loads ``engine`` (export cached) and parses h x w JPEGs."""
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, (h, w) in enumerate(sizes):
            files.append(os.path.join(d, f"{i}.jpg"))
            Path(files[-1]).write_bytes(photo_bytes(h, w))
        out = subprocess.run(
            [sys.executable, "-c", ENGINE_RSS_CODE, model, engine, str(threads), *files],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    after_load, peak = out.stdout.split()[-2:]
    return {"after_load_mib": round(float(after_load)), "peak_mib": round(float(peak))}


def _variants(model: str, args) -> dict[str, str]:
    """Engine label -> --model for it: the exported engines read the cache; bf16 / int8 exports
    (opt-in precision) are written into a temp dir."""
    out = {name: model for name in args.engines.split(",")}
    if args.bf16:
        out["openvino-bf16"] = _export_variant(model, "openvino", "bf16", None)
    if args.int8:
        out["onnxruntime-int8"] = _export_variant(model, "onnx", "int8", args.int8)
    return out


def _export_variant(model: str, fmt: str, precision: str, photos: int | None) -> str:
    from m2fp_batch.inference.backends import export_model
    from m2fp_batch.inference.export_cli import calibration_batches
    from m2fp_batch.inference.loading import load_model

    loaded = load_model(model)
    net, info = loaded.net, loaded.info
    out = Path(tempfile.mkdtemp(prefix=f"m2fp-{precision}-")) / fmt
    calibration = None
    if photos:
        calib = Path(tempfile.mkdtemp(prefix="m2fp-calib-"))
        for i in range(photos):  # different crops and sizes of the real photo
            (calib / f"{i}.jpg").write_bytes(photo_bytes(480 + 64 * i, 640 - 32 * i))
        calibration = calibration_batches(str(calib), photos)
    export_model(net, info, out, fmt, precision=precision, calibration=calibration)
    return str(out)


def _agreement(a, b, num_classes: int) -> dict:
    """Pixels with the same label, and per-class IoU, of a lower-precision result ``a`` vs fp32 ``b``."""
    import numpy as np

    same = float((a.semantic == b.semantic).mean())
    iou = {}
    for c in range(num_classes):
        x, y = a.semantic == c, b.semantic == c
        union = int((x | y).sum())
        if union:
            iou[c] = round(int((x & y).sum()) / union, 3)
    return {
        "same_label": round(same, 4),
        "per_class_iou": iou,
        "mean_iou": round(float(np.mean(list(iou.values()))), 3),
    }


def engine_comparison(model: str, jpeg: bytes, args) -> dict:
    """Each engine's end-to-end seconds (parse_one from JPEG bytes), efficiency and stage budget,
    timed in turn for ``args.engine_rounds`` rounds with the matmul peak in every round."""
    from m2fp_batch.decode import decode_image
    from m2fp_batch.inference import M2FPParser

    parsers = {}
    for label, source in _variants(model, args).items():
        t0 = time.perf_counter()
        parsers[label] = M2FPParser.from_pretrained(source, engine=label.split("-")[0], threads=args.threads)
        parsers[label].parse_one(decode_image(Path(jpeg).read_bytes()))  # warm-up
        print(
            f"# {label}: load (+ export on a cache miss) and first call {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    times: dict[str, list[dict]] = {k: [] for k in parsers}
    peaks = []
    for _ in range(args.engine_rounds):
        for label, parser in parsers.items():
            t0 = time.perf_counter()
            res = parser.parse_one(decode_image(Path(jpeg).read_bytes()))
            total = time.perf_counter() - t0
            times[label].append(
                {
                    **res.timings,
                    "end_to_end": total,
                    "decode": total - sum(res.timings[k] for k in ("preprocess", "forward", "postprocess")),
                }
            )
        peaks.append(matmul_peak(args.threads))
    peak = max(peaks)
    rows = {}
    for label, runs in times.items():
        med = {
            k: statistics.median(r[k] for r in runs)
            for k in ("end_to_end", "decode", "preprocess", "forward", "postprocess")
        }
        rows[label] = {
            "median_s": {k: round(v, 3) for k, v in med.items()},
            "efficiency": round(REFERENCE_GFLOPS_640 * 1e9 / (med["end_to_end"] * peak), 3),
            "forward_efficiency": round(REFERENCE_GFLOPS_640 * 1e9 / (med["forward"] * peak), 3),
        }
    if "onnxruntime" in parsers:
        rows["onnxruntime"]["op_budget"] = onnxruntime_op_budget(parsers["onnxruntime"].backend, jpeg)
    fp32 = {"openvino-bf16": "openvino", "onnxruntime-int8": "onnxruntime"}
    img = decode_image(Path(jpeg).read_bytes())
    for label, ref in fp32.items():
        if label in parsers and ref in parsers:
            rows[label]["agreement_with_fp32"] = _agreement(
                parsers[label].parse_one(img), parsers[ref].parse_one(img), len(parsers[ref].class_names)
            )
    if not args.no_memory:
        for label, parser in parsers.items():
            source = parser.info.model_dir if "-" in label else model
            rows[label]["rss"] = engine_rss(
                source, label.split("-")[0], args.threads, [(640, 640), (640, 1333), (1800, 1536)]
            )
    return {
        "rounds": args.engine_rounds,
        "matmul_peak_gflops_per_round": [round(x / 1e9, 1) for x in peaks],
        "engines": rows,
    }


def onnxruntime_op_budget(backend, jpeg: bytes, top: int = 10, runs: int = 2) -> list[dict]:
    """Where ONNX Runtime's forward spends its time at 640x640: ``runs`` profiled runs after a
    warm-up, kernel time summed by op type (per run)."""
    import onnxruntime as ort

    from m2fp_batch.decode import decode_image
    from m2fp_batch.inference import preprocess as pp
    from m2fp_batch.model.build import PIXEL_MEAN, PIXEL_STD, SIZE_DIVISIBILITY
    from m2fp_batch.resize import target_size

    img = decode_image(Path(jpeg).read_bytes())
    mean, std = torch.tensor(PIXEL_MEAN).view(-1, 1, 1), torch.tensor(PIXEL_STD).view(-1, 1, 1)
    batch = pp.to_batch([pp.resize(img, target_size(*img.shape[:2]))], mean, std, SIZE_DIVISIBILITY).numpy()
    opts = backend.options  # the engine's own settings, plus profiling
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    sess = ort.InferenceSession(str(backend.graph_path), opts, providers=["CPUExecutionProvider"])
    opts.enable_profiling = False
    for _ in range(runs + 1):
        sess.run(None, {"images": batch})
    events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            by_op.setdefault(e.get("args", {}).get("op_name", "?"), []).append(e["dur"] / 1e6)
    # the warm-up run is the first third of each op's events when every op runs once per run
    per_run = {op: sum(v[len(v) // (runs + 1) :]) / runs for op, v in by_op.items()}
    total = sum(per_run.values())
    rows = sorted(per_run.items(), key=lambda kv: -kv[1])[:top]
    return [{"op": op, "s": round(t, 3), "share": round(t / total, 3)} for op, t in rows]


def engine_table(result: dict) -> str:
    peak = max(result["matmul_peak_gflops_per_round"])
    lines = [
        f"engines interleaved, {result['rounds']} rounds, 640x640 photo, fp32 matmul peak up to {peak:.0f} GFLOP/s, "
        f"efficiency = {REFERENCE_GFLOPS_640:.0f} GFLOPs / (time x peak):",
        "| engine | end to end (s) | efficiency | decode | preprocess | forward (efficiency) | postprocess | RSS after load / peak (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in result["engines"].items():
        m = r["median_s"]
        rss = f"{r['rss']['after_load_mib']} / {r['rss']['peak_mib']}" if "rss" in r else "-"
        lines.append(
            f"| {label} | {m['end_to_end']:.3f} | {r['efficiency']:.3f} | {m['decode']:.3f} | {m['preprocess']:.3f} | "
            f"{m['forward']:.3f} ({r['forward_efficiency']:.3f}) | {m['postprocess']:.3f} | "
            f"{rss} |"
        )
    budget = result["engines"].get("onnxruntime", {}).get("op_budget")
    if budget:
        lines.append("onnxruntime forward by op type (kernel time per run, profiled): " + ", ".join(
            f"{b['op']} {b['s']:.3f} s ({b['share']:.0%})" for b in budget))  # fmt: skip
    for label, r in result["engines"].items():
        if "agreement_with_fp32" in r:
            a = r["agreement_with_fp32"]
            lines.append(
                f"{label} vs fp32: same label on {a['same_label']:.2%} of pixels, mean IoU {a['mean_iou']:.3f}, per class {a['per_class_iou']}"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model dir (default: build the seed-3 full-size checkpoint)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--fast-backbone", action=argparse.BooleanOptionalAction, default=False, help="the engine default: off"
    )
    ap.add_argument("--no-levers", action="store_true", help="skip the per-lever on/off measurements")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile lever")
    ap.add_argument("--no-memory", action="store_true", help="skip the large-photo memory probes")
    ap.add_argument("--memory-only", action="store_true", help="only the memory probes (MEMORY_PROBES)")
    ap.add_argument("--memory-engine", default="torch", help="the engine the --memory-only probes run")
    ap.add_argument("--interleave", type=int, default=5, help="rounds of the interleaved engines (0: skip)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--engines", default="torch,onnxruntime,openvino", help="engines to compare (comma-separated)")
    ap.add_argument("--engine-rounds", type=int, default=3, help="rounds of the interleaved engines table (0: skip)")
    ap.add_argument("--engines-only", action="store_true", help="only the engines table (with its RSS probes)")
    ap.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=HAS_BF16,
        help="add openvino-bf16 (default: CPU has avx512_bf16)",
    )
    ap.add_argument("--int8", type=int, default=0, metavar="N", help="add onnxruntime-int8 calibrated on N photos")
    args = ap.parse_args()

    from m2fp_batch.decode import decode_image
    from m2fp_batch.inference import M2FPParser
    from m2fp_batch.inference import preprocess as pp
    from m2fp_batch.resize import target_size

    tmp = None
    model = args.model
    if model is None:
        from tiny_model import write_reference_model

        tmp = tempfile.TemporaryDirectory()
        model = str(write_reference_model(Path(tmp.name) / "seed3"))
    if args.engines_only:
        result = engine_comparison(model, photo_bytes(640, 640), args)
        print(json.dumps(result, indent=1))
        print(engine_table(result) + "\n" + PRECISION_NOTE)
        return 0
    if args.memory_only:
        print(
            json.dumps(
                {
                    f"memory_{k}": memory_probe(model, v, args.threads, args.memory_engine)
                    for k, v in MEMORY_PROBES.items()
                },
                indent=1,
            )
        )
        return 0

    peak_before = matmul_peak(args.threads)
    parser = M2FPParser.from_pretrained(model, threads=args.threads, fast_backbone=args.fast_backbone)
    net = parser.model
    jpeg = photo_bytes(640, 640)
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    with torch.inference_mode():
        for r in range(args.repeats + 1):  # the first round warms up
            t0 = time.perf_counter()
            img = decode_image(Path(jpeg).read_bytes())
            t1 = time.perf_counter()
            size = target_size(*img.shape[:2])
            batch = pp.to_batch([pp.resize(img, size)], net.pixel_mean, net.pixel_std, net.size_divisibility)
            if parser.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            t2 = time.perf_counter()
            feats = net.backbone(batch)
            t3 = time.perf_counter()
            mask_features, ms = net.sem_seg_head.pixel_decoder(feats)
            t4 = time.perf_counter()
            out = net.sem_seg_head.predictor(ms, mask_features)
            t5 = time.perf_counter()
            parser._postprocess(
                out["pred_logits"][0], out["pred_masks"][0], img.shape[:2], size, tuple(batch.shape[-2:]), True, False
            )
            t6 = time.perf_counter()
            if r == 0:
                continue
            for k, v in zip(
                STAGES,
                [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t6 - t0, t5 - t2],
            ):
                stages[k].append(v)
        with FlopCounterMode(display=False) as fc:
            net(batch)
        flops = fc.get_total_flops()
        # bare model loop vs the engine's own end-to-end path (decode + parse) on the same photo
        bare = statistics.median(_time(lambda: net(batch)) for _ in range(args.repeats))
    e2e = statistics.median(
        _time(lambda: parser.parse_one(decode_image(Path(jpeg).read_bytes()))) for _ in range(args.repeats)
    )
    # the peak again after the model runs: machines with noisy neighbours drift; use the higher
    peak_after = matmul_peak(args.threads)
    peak = max(peak_before, peak_after)
    med = {k: statistics.median(v) for k, v in stages.items()}
    result = {
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"),
        "input_hw": list(batch.shape[-2:]),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "matmul_peak_before_after_gflops": [round(peak_before / 1e9, 1), round(peak_after / 1e9, 1)],
        "model_gflops": round(flops / 1e9, 1),
        "stage_median_s": {k: round(v, 4) for k, v in med.items()},
        "model_efficiency": round(flops / (med["forward"] * peak), 3),
        "end_to_end_s_per_image": round(e2e, 3),
        "images_per_s": round(1 / e2e, 3),
        "bare_model_loop_s": round(bare, 3),
        "bare_model_loop_note": "network forward only, same photo, already decoded and preprocessed",
        "end_to_end_over_bare": round(e2e / bare, 3),
        "peak_rss_mib_this_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "model_forward_at_efficiency_1_s": round(flops / peak, 3),
        "fast_backbone": args.fast_backbone,
    }
    if not args.no_memory:
        for name, sizes in MEMORY_PROBES.items():
            result[f"memory_{name}"] = memory_probe(model, sizes, args.threads)
    result["end_to_end_efficiency"] = round(flops / (e2e * peak), 3)
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    if not args.no_levers:
        result["levers"] = measure_levers(parser, model, jpeg, args, flops, peak)
    if args.interleave:
        result["interleaved"] = interleaved(parser, model, jpeg, args, flops)
    if args.engine_rounds:
        result["engine_comparison"] = engine_comparison(model, jpeg, args)
    print(json.dumps(result, indent=1))
    print(
        f"\nend-to-end efficiency (parse_one, 640x640): {result['end_to_end_efficiency']:.3f} of {peak / 1e9:.0f} GFLOP/s"
    )
    if "levers" in result:
        print(lever_table(result["levers"]))
    if "interleaved" in result:
        il = result["interleaved"]
        print(f"interleaved, {il['rounds']} rounds, peak up to {max(il['matmul_peak_gflops_per_round']):.0f} GFLOP/s:")
        for k, v in il["median_s"].items():
            print(f"  {k}: {v:.3f} s per image, end-to-end efficiency {il['end_to_end_efficiency'][k]:.3f}")
    if "engine_comparison" in result:
        print(engine_table(result["engine_comparison"]) + "\n" + PRECISION_NOTE)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
