"""Files written on one CPU, decoded on other instruction sets: a long measurement; a
script, not a test module (pytest only collects ``test_*.py``). The quick, one-photo
version is tests/codec/test_determinism.py.

    OMP_NUM_THREADS=1 .venv/bin/python tests/portability_long.py ../shared/data/val \\
        results/portability.json

Encodes every photo of the folder at several qualities in this process (default
kernels) and decodes each file here, as the reference. Then fresh processes, each
forced onto other CPU kernels (the environments of ``KERNELS`` in tests/conftest.py) decode all
the files of a model and compare with the reference: decode failures (any exception),
table indices / y symbols / means that differ, and pixels that differ (largest
|difference|, how many values, how many files). The exact default model is checked on
every environment; the old float model on AVX2 only, for contrast. Writes every
file's result to the JSON, prints a summary table; exits 1 if an exact model failed
a decode, changed a latent or moved a pixel by more than 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rdcodec.codec import pipeline
from rdcodec.models.registry import load_model


# As KERNELS in tests/conftest.py: torch's ATen dispatch level, MKL's and
# oneDNN's instruction sets (oneDNN runs the convolutions; ATen's level does not reach
# it), and the thread count, read when the decode process starts.
def _onednn(isa: str) -> dict[str, str]:
    return {"ONEDNN_MAX_CPU_ISA": isa, "DNNL_MAX_CPU_ISA": isa}


KERNELS = {
    "default": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        **_onednn("SSE41"),
        "OMP_NUM_THREADS": "1",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        **_onednn("AVX2"),
        "OMP_NUM_THREADS": "2",
    },
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", **_onednn("AVX512_CORE"), "OMP_NUM_THREADS": "1"},
}
# (model, qualities, kernel environments)
PLAN = [
    ("hp-exact-n96m128", [1, 2, 4, 5, 6, 8, 10, 11], ["default", "avx2", "avx512"]),
    ("hp-gain-n96m128", [1, 2, 3, 4, 5, 6, 7, 8], ["avx2"]),
]
SECONDS_PER_FILE_LIMIT = 120  # a decode process gets this much per file it is given


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if "avx" in f)
    except OSError:
        pass
    return []


def kernels_now() -> dict:
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


# ---- the encoder process -------------------------------------------------------------


def encode_all(model_name: str, qualities: list[int], photos: list[Path], work: Path) -> list[dict]:
    """Encode every photo at every quality; save each file and its reference decode."""
    model = load_model(model_name)
    jobs = []
    for n, photo in enumerate(photos, 1):
        with Image.open(photo) as im:
            image = np.array(im.convert("RGB"))
        for quality in qualities:
            name = f"{photo.stem}_q{quality}"
            start = time.perf_counter()
            data = pipeline.encode(image, quality, model)
            seconds = time.perf_counter() - start
            lat = pipeline.decode_latents(data, model)
            pixels = pipeline.decode_array(data, model)
            (work / f"{name}.rdc").write_bytes(data)
            np.savez(
                work / f"{name}.npz",
                indices=lat.y_indices,
                symbols=lat.y_symbols,
                means=lat.means.numpy(),
                pixels=pixels,
            )
            jobs.append(
                {
                    "name": name,
                    "photo": photo.name,
                    "quality": quality,
                    "bytes": len(data),
                    "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]),
                    "encode_seconds": round(seconds, 3),
                    "file": str(work / f"{name}.rdc"),
                    "reference": str(work / f"{name}.npz"),
                }
            )
        print(f"  {model_name}: encoded {n}/{len(photos)} photos", flush=True)
    return jobs


def decode_elsewhere(model_name: str, env_name: str, jobs: list[dict], work: Path) -> tuple:
    """Decode ``jobs`` in fresh processes under ``KERNELS[env_name]``.

    One process takes all the files; if it dies or hangs, the file it was on counts as
    a failure and a new process goes on with the rest.
    """
    env = {**os.environ, **KERNELS[env_name]}
    results: dict[str, dict] = {}
    kernels = None
    while len(results) < len(jobs):
        todo = [job for job in jobs if job["name"] not in results]
        jobs_file = work / f"jobs-{env_name}.json"
        out_file = work / f"out-{env_name}.jsonl"
        jobs_file.write_text(json.dumps({"model": model_name, "jobs": todo}))
        out_file.unlink(missing_ok=True)
        command = [sys.executable, __file__, "--worker", str(jobs_file), str(out_file)]
        try:
            rc = subprocess.run(
                command, env=env, timeout=SECONDS_PER_FILE_LIMIT * len(todo)
            ).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        lines = out_file.read_text().splitlines() if out_file.exists() else []
        for line in lines:
            record = json.loads(line)
            if "capability" in record:
                kernels = record
            else:
                results[record["name"]] = record
        if len(results) < len(jobs):
            # The process ended (or hung) on the first file it did not report.
            lost = next(job for job in todo if job["name"] not in results)
            print(f"  decode process ended ({rc}) on {lost['name']}", flush=True)
            results[lost["name"]] = {"name": lost["name"], "error": f"decode process ended: {rc}"}
    return kernels, [results[job["name"]] for job in jobs]


# ---- the decode process ---------------------------------------------------------------


def worker(jobs_file: str, out_file: str) -> int:
    """Decode each job's file under this process's kernels; one JSON line per file."""
    spec = json.loads(Path(jobs_file).read_text())
    model = load_model(spec["model"])
    with open(out_file, "w") as out:
        out.write(json.dumps(kernels_now()) + "\n")
        out.flush()
        for n, job in enumerate(spec["jobs"], 1):
            out.write(json.dumps(compare_one(job, model)) + "\n")
            out.flush()
            if n % 24 == 0 or n == len(spec["jobs"]):
                print(
                    f"    {os.environ.get('ATEN_CPU_CAPABILITY')}: {n}/{len(spec['jobs'])}",
                    flush=True,
                )
    return 0


def compare_one(job: dict, model) -> dict:
    data = Path(job["file"]).read_bytes()
    start = time.perf_counter()
    record: dict = {"name": job["name"]}
    try:
        lat = pipeline.decode_latents(data, model)
        pixels = pipeline.decode_array(data, model)
    except Exception as exc:  # every failure counts, a CodecError or not
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=3)
        return record
    record["decode_seconds"] = round(time.perf_counter() - start, 3)
    with np.load(job["reference"]) as ref:
        record["indices_equal"] = bool(np.array_equal(lat.y_indices, ref["indices"]))
        record["symbols_equal"] = bool(np.array_equal(lat.y_symbols, ref["symbols"]))
        record["means_equal"] = bool(np.array_equal(lat.means.numpy(), ref["means"]))
        if pixels.shape != ref["pixels"].shape:
            record["error"] = f"shape {pixels.shape} != encoder's {ref['pixels'].shape}"
            return record
        diff = np.abs(pixels.astype(np.int16) - ref["pixels"].astype(np.int16))
    record["max_diff"] = int(diff.max())
    record["diff_values"] = int(np.count_nonzero(diff))
    record["diff_over_1"] = int(np.count_nonzero(diff > 1))
    record["values"] = int(diff.size)
    return record


# ---- summary --------------------------------------------------------------------------


def summarise(records: list[dict]) -> dict:
    decoded = [r for r in records if "max_diff" in r]
    failed = [r for r in records if "error" in r]
    values = sum(r["values"] for r in decoded)
    diff_values = sum(r["diff_values"] for r in decoded)
    latents = ("indices_equal", "symbols_equal", "means_equal")
    return {
        "files": len(records),
        "failed": len(failed),
        "failed_differ": sum("differ" in r["error"] for r in failed),
        "failures": sorted({r["error"].split(";")[0] for r in failed}),
        "latents_differ": sum(not all(r.get(k, True) for k in latents) for r in records),
        "indices_differ": sum(not r.get("indices_equal", True) for r in records),
        "symbols_differ": sum(not r.get("symbols_equal", True) for r in records),
        "means_differ": sum(not r.get("means_equal", True) for r in records),
        "files_pixels_differ": sum(r["diff_values"] > 0 for r in decoded),
        "max_diff": max((r["max_diff"] for r in decoded), default=None),
        "diff_values": diff_values,
        "diff_over_1": sum(r["diff_over_1"] for r in decoded),
        "values": values,
        "diff_fraction": diff_values / values if values else None,
    }


def print_table(runs: list[dict]) -> None:
    head = (
        f"{'model':18} {'kernels':8} {'cap':8} {'files':>5} {'failed':>6} {'latents≠':>8} "
        f"{'files px≠':>9} {'max|d|':>6} {'values≠':>9} {'fraction':>9}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for run in runs:
        s = run["summary"]
        frac = "-" if s["diff_fraction"] is None else f"{s['diff_fraction']:.2e}"
        print(
            f"{run['model']:18} {run['kernels']:8} {run['capability']:8} {s['files']:5d} "
            f"{s['failed']:6d} {s['latents_differ']:8d} {s['files_pixels_differ']:9d} "
            f"{'-' if s['max_diff'] is None else s['max_diff']:>6} {s['diff_values']:9d} {frac:>9}"
        )
    for run in runs:
        for reason in run["summary"]["failures"]:
            print(f"  {run['model']} {run['kernels']}: {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of .png photos")
    parser.add_argument("out", type=Path, help="JSON file for the results")
    parser.add_argument(
        "--models",
        help="comma-separated shipped models to check on every environment, at the exact "
        "model's qualities (default: the plan, the exact default model and the float one)",
    )
    args = parser.parse_args()
    plan = PLAN
    if args.models:
        qualities, envs = PLAN[0][1], PLAN[0][2]
        plan = [
            (name, [q for q in qualities if q <= load_model(name).network.config.levels], envs)
            for name in args.models.split(",")
        ]
    photos = sorted(args.folder.glob("*.png"))
    if not photos:
        parser.error(f"no .png files in {args.folder}")

    start = time.perf_counter()
    encoder = kernels_now()
    print(f"CPU: {cpu_model()}; encoder: {encoder}; torch {torch.__version__}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="rdcodec-portability-"))
    runs = []
    try:
        for model_name, qualities, env_names in plan:
            jobs = encode_all(model_name, qualities, photos, work)
            for env_name in env_names:
                print(f"  {model_name}: decoding under {env_name}", flush=True)
                kernels, records = decode_elsewhere(model_name, env_name, jobs, work)
                for job, record in zip(jobs, records, strict=True):
                    record.update({k: job[k] for k in ("photo", "quality", "bytes", "bpp")})
                runs.append(
                    {
                        "model": model_name,
                        "kernels": env_name,
                        "environment": KERNELS[env_name],
                        "capability": (kernels or {}).get("capability", "?"),
                        "threads": (kernels or {}).get("threads"),
                        "summary": summarise(records),
                        "files": records,
                    }
                )
            for path in work.iterdir():  # the next model's files start clean
                path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    seconds = time.perf_counter() - start
    result = {
        "name": "portability",
        "description": "files encoded under the default kernels, decoded in processes "
        "forced onto other CPU kernels; pixels compared with the encoder's own decode",
        "cpu": cpu_model(),
        "cpu_avx_flags": cpu_flags(),
        "torch": torch.__version__,
        "photos": [p.name for p in photos],
        "encoder": encoder,
        "seconds": round(seconds, 1),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print_table(runs)
    print(f"\n{seconds / 60:.1f} min; results in {args.out}")
    exact_bad = [
        run
        for run in runs
        if load_model(run["model"]).network.config.exact
        and (
            run["summary"]["failed"]
            or run["summary"]["latents_differ"]
            or (run["summary"]["max_diff"] or 0) > 1
        )
    ]
    return 1 if exact_bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2], sys.argv[3]))
    sys.exit(main())
