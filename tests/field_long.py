"""Files of the first release, from the field, decoded under every kernel set: a long
measurement; a script, not a test module. The quick version with three of these files
is tests/codec/test_repair.py.

    .venv/bin/python tests/field_long.py ../shared/field/v0-files ../shared/data/val \\
        results/field.json

The folder holds ``*.rdc`` files written by ``hp-gain-n96m128`` (wire id 1) and a
``field.json`` with each file's source photo and the PSNR it decoded to when it was
made. Each kernel set (the machine's default, and the forced SSE / AVX2 / AVX-512
environments of tests/codec/test_determinism.py) decodes every file in a fresh
process, and the script reports per kernel set: files decoded, repaired (and how many
indices each), refused, the repair's candidates, tries and seconds, and the largest
|PSNR - recorded PSNR|. Exits 1 if any file was refused or missed its PSNR by 0.05 dB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

KERNELS = {
    "machine default": {},
    "sse (ATen default)": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "DNNL_MAX_CPU_ISA": "SSE41",
        "OMP_NUM_THREADS": "1",
    },
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "OMP_NUM_THREADS": "2",
    },
    "avx512": {
        "ATEN_CPU_CAPABILITY": "avx512",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "DNNL_MAX_CPU_ISA": "AVX512_CORE",
        "OMP_NUM_THREADS": "1",
    },
}

# Runs in the decoding process: every file, with the repair's report.
DECODE = r"""
import json, sys, time, warnings
from pathlib import Path
import numpy as np
from PIL import Image
from rdcodec.codec import pipeline, repair
from rdcodec.codec.metrics import psnr
from rdcodec.errors import CodecError

folder, photos, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
field = json.loads((folder / "field.json").read_text())
reports = {}
original = repair.repair_indices
def traced(*args, **kwargs):
    result = original(*args, **kwargs)
    traced.last = result
    return result
repair.repair_indices = traced
for name, entry in sorted(field.items()):
    traced.last = None
    data = (folder / name).read_bytes()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoded = pipeline.decode_array(data)
    except CodecError as exc:
        reports[name] = {"status": "refused", "error": str(exc)}
        continue
    seconds = time.perf_counter() - start
    source = np.array(Image.open(photos / entry["source"]).convert("RGB"))
    r = traced.last
    reports[name] = {
        "status": "repaired" if r is not None and r.flipped else "decoded",
        "flipped": r.flipped if r else 0,
        "candidates": r.candidates if r else 0,
        "tries": r.tries if r else 0,
        "repair_seconds": r.seconds if r else 0.0,
        "decode_seconds": seconds,
        "psnr": psnr(source, decoded),
        "recorded_psnr": entry["psnr"],
    }
Path(out).write_text(json.dumps(reports))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("photos", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    results, bad = {}, False
    for label, env in KERNELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.json"
            subprocess.run(
                [sys.executable, "-c", DECODE, str(args.folder), str(args.photos), str(out)],
                env={**os.environ, **env},
                check=True,
            )
            rows = json.loads(out.read_text())
        results[label] = rows
        done = [r for r in rows.values() if r["status"] != "refused"]
        fixed = [r for r in done if r["status"] == "repaired"]
        refused = len(rows) - len(done)
        worst = max((abs(r["psnr"] - r["recorded_psnr"]) for r in done), default=0.0)
        flips = sorted(r["flipped"] for r in fixed)
        print(
            f"{label:20s} decoded {len(done)}/{len(rows)}, repaired {len(fixed)} "
            f"(indices each: {flips}), refused {refused}, max |dPSNR| {worst:.4f} dB"
        )
        if fixed:
            cands = [r["candidates"] for r in fixed]
            tries = [r["tries"] for r in fixed]
            secs = [r["repair_seconds"] for r in fixed]
            print(
                f"{'':20s} candidates {min(cands)}-{max(cands)}, tries {min(tries)}-{max(tries)}"
                f", repair {1000 * min(secs):.1f}-{1000 * max(secs):.1f} ms"
            )
        bad |= refused > 0 or worst > 0.05
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
