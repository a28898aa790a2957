"""Long random fuzzing of the decoder; a script, not a test module (pytest only
collects ``test_*.py``). The quick, fixed-example version is tests/codec/test_fuzz.py.

    .venv/bin/python tests/fuzz_long.py --cases 10000 --seconds 600

Mutates valid files made with a tiny untrained model (as tests/conftest.py builds
it) and checks that ``pipeline.decode_array`` returns an image of the declared shape
or raises a ``CodecError``. Prints, per mutation kind, how each decode ended, then
every exception that is not a ``CodecError`` (with a traceback and the file as hex)
and the slowest decodes. Exits 1 if anything escaped or a decode was slow; a decode
that hangs past ``--hang`` seconds dumps every thread's stack and exits 2.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import random
import re
import struct
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from rdcodec.codec import container, entropy, pipeline, repair
from rdcodec.errors import CodecError
from rdcodec.models import gaussian

IMAGES = Path(__file__).parent / "images"
CRC = container.CRC_BYTES
FIELDS = container.FIELDS
EDGES = [0, 1, 2, 3, 4, 7, 8, 63, 64, 65, 255, 256, 999, 1000, 8000, 8001, 65535, 65536, 65537]
EDGES += [1 << 24, (1 << 28) + 1, 1 << 31, (1 << 32) - 1]


def tiny_model():
    """The 8-channel untrained model of tests/conftest.py."""
    from rdcodec.models.network import ModelConfig
    from rdcodec.models.registry import export_weights, load_weights_file
    from rdcodec.models.trainable import GainedHyperprior

    torch.manual_seed(0)
    net = GainedHyperprior(ModelConfig(N=8, M=12))
    path = Path(tempfile.mkdtemp(prefix="rdcodec-fuzz-")) / "tiny.rdw"
    export_weights(net, path)
    return load_weights_file(path, "tiny", 250)


def seed_files(model) -> list[bytes]:
    with Image.open(IMAGES / "astronaut.png") as im:
        photo = np.array(im.convert("RGB"))[30:70, 20:76]
    noise = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    return [
        pipeline.encode(photo, 4, model),
        pipeline.encode(noise, 8, model),
        pipeline.encode(noise[:17, :9], 1.5, model, grayscale=True),
        pipeline.encode(noise[:, :, ::-1].copy(), 2.75, model),
    ]


# ---- building files ------------------------------------------------------------------


def with_crc(body: bytes) -> bytes:
    return bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))


def set_field(data: bytes, name: str, value: int) -> bytes:
    offset, size = FIELDS[name]
    body = bytearray(data[:-CRC])
    body[offset : offset + size] = (value % (1 << (8 * size))).to_bytes(size, "big")
    return with_crc(body)


def rebuild(data: bytes, z: bytes, y: bytes) -> bytes:
    head = bytearray(data[: container.HEADER_BYTES])
    head[29:33] = len(z).to_bytes(4, "big")
    head[33:37] = len(y).to_bytes(4, "big")
    return with_crc(bytes(head) + z + y)


@torch.no_grad()
def forge_index_crc(data: bytes, model) -> bytes:
    """``data`` with the index CRC the decoder will compute from its z payload, as a
    hand-made file can carry; unchanged where that fails."""
    try:
        header, z, _ = container.unpack(data)
        net = model.network
        shape = (
            1,
            net.config.N,
            -(-header.height // net.multiple),
            -(-header.width // net.multiple),
        )
        z_sym = entropy.decode(
            z, pipeline._channel_indices(shape), entropy.TableSet.from_arrays(model.z_tables)
        )
        z_hat = net.z_hat(z_sym)
        _, scales = net.entropy_parameters(z_hat)
    except Exception:  # noqa: BLE001 - the decode proper meets the same and is judged
        return data
    return set_field(data, "index_crc", repair.index_crc(gaussian.scale_indices(scales)))


@torch.no_grad()
def y_indices(header, z: bytes, model) -> tuple[tuple[int, ...], np.ndarray]:
    """The z shape and the y table indices the decoder derives from ``z``."""
    net = model.network
    shape = (1, net.config.N, -(-header.height // net.multiple), -(-header.width // net.multiple))
    z_sym = entropy.decode(
        z, pipeline._channel_indices(shape), entropy.TableSet.from_arrays(model.z_tables)
    )
    z_hat = net.z_hat(z_sym)
    _, scales = net.entropy_parameters(z_hat)
    return shape, gaussian.scale_indices(scales)


def code_values(values: np.ndarray, indexes: np.ndarray, tables: dict) -> bytes:
    """A valid ANS payload for any value in -2**31 .. 2**31 - 1, all that the escape
    code can carry (the encoder itself stops at 2**30)."""
    with mock.patch.object(entropy, "VALUE_LIMIT", 1 << 32):
        return entropy.encode(values, indexes, entropy.TableSet.from_arrays(tables))


def extreme_values(rng: random.Random, shape: tuple[int, ...]) -> np.ndarray:
    """Mostly small values, some beyond the tables, a few at the escape code's ends."""
    gen = np.random.default_rng(rng.getrandbits(64))
    values = gen.integers(-3, 4, size=shape)
    far = gen.random(shape)
    values = np.where(far < 0.2, gen.integers(-5000, 5001, size=shape), values)
    ends = gen.choice([-(1 << 31), (1 << 31) - 1, 1 << 30, -(1 << 30)], size=shape)
    return np.where(far < 0.05 * rng.random(), ends, values).astype(np.int64)


def random_bytes(rng: random.Random, n: int) -> bytes:
    """Random, all-zero, all-0xFF or mostly-zero bytes: coders have edge cases there."""
    style = rng.random()
    if style < 0.1:
        return bytes(n)
    if style < 0.15:
        return b"\xff" * n
    if style < 0.3:
        return bytes(rng.choice([0, 0, 0, 1, 255]) for _ in range(n))
    return rng.randbytes(n)


def words(rng: random.Random, max_words: int) -> bytes:
    return random_bytes(rng, 4 * rng.randint(0, max_words))


# ---- mutations: each takes (rng, a valid file, model) and returns a file -------------


def bit_flips(rng, data, model):
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        bit = rng.randrange(8 * len(out))
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def byte_edits_crc(rng, data, model):
    body = bytearray(data[:-CRC])
    for _ in range(rng.randint(1, 6)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    return with_crc(body)


def header_field_crc(rng, data, model):
    name = rng.choice(sorted(FIELDS))
    _, size = FIELDS[name]
    if rng.random() < 0.5:
        value = rng.choice(EDGES)
    elif rng.random() < 0.5:
        value = int.from_bytes(data[FIELDS[name][0] :][:size], "big") + rng.randint(-3, 3)
    else:
        value = rng.getrandbits(8 * size)
    out = set_field(data, name, value)
    return (
        forge_index_crc(out, model) if name in ("height", "width") and rng.random() < 0.5 else out
    )


def truncate(rng, data, model):
    n = rng.randrange(len(data))
    return with_crc(data[: max(0, n - CRC)]) if rng.random() < 0.5 else data[:n]


def append(rng, data, model):
    extra = random_bytes(rng, rng.randint(1, 64))
    return with_crc(data[:-CRC] + extra) if rng.random() < 0.5 else data + extra


def random_payloads(rng, data, model):
    if rng.random() < 0.5:
        z, y = words(rng, 12), words(rng, 48)
    else:
        z, y = random_bytes(rng, rng.randint(0, 48)), random_bytes(rng, rng.randint(0, 192))
    out = rebuild(data, z, y)
    return forge_index_crc(out, model) if rng.random() < 0.5 else out


def y_payload_edits(rng, data, model):
    # z untouched: the index CRC still matches, so y really goes to the y decoder.
    _, z, y = container.unpack(data)
    y = bytearray(y)
    for _ in range(rng.randint(0, 6)):
        if y:
            y[rng.randrange(len(y))] = rng.randrange(256)
    cut = 4 * rng.randint(0, 3) if rng.random() < 0.3 else 0
    y = bytes(y[: len(y) - cut]) + (words(rng, 3) if rng.random() < 0.3 else b"")
    return rebuild(data, z, y)


def z_payload_edits_forged(rng, data, model):
    _, z, y = container.unpack(data)
    z = bytearray(z)
    for _ in range(rng.randint(1, 4)):
        if z:
            z[rng.randrange(len(z))] = rng.randrange(256)
    if rng.random() < 0.3:
        z += words(rng, 2)
    return forge_index_crc(rebuild(data, bytes(z), y), model)


def lengths_moved(rng, data, model):
    header = pipeline.read_header(data)
    total = header.len_z + header.len_y
    len_z = min(total, max(0, header.len_z + rng.randint(-16, 16)))
    out = set_field(set_field(data, "len_z", len_z), "len_y", total - len_z)
    return forge_index_crc(out, model) if rng.random() < 0.5 else out


def declared_size(rng, data, model):
    # Mostly sizes a tiny file could claim; rarely large ones (slow on purpose).
    big = rng.random() < 0.02
    height = rng.randint(1, 4096 if big else 600)
    width = rng.randint(1, 4096 if big else 600)
    out = set_field(set_field(data, "height", height), "width", width)
    if rng.random() < 0.4:  # empty payloads decode (to all-zero symbols) at any size
        out = rebuild(out, b"", b"")
    return forge_index_crc(out, model) if rng.random() < 0.7 else out


def z_extreme_values_forged(rng, data, model):
    # A well-formed z payload of wild values: h_s then sees extreme inputs.
    header, _, y = container.unpack(data)
    shape, _ = y_indices(header, b"", model)
    z = code_values(extreme_values(rng, shape), pipeline._channel_indices(shape), model.z_tables)
    return forge_index_crc(rebuild(data, z, b"" if rng.random() < 0.7 else y), model)


def y_extreme_values(rng, data, model):
    # z kept (the index CRC holds) and a well-formed y of wild values: the synthesis
    # runs on them.
    header, z, _ = container.unpack(data)
    _, indexes = y_indices(header, z, model)
    y = code_values(extreme_values(rng, indexes.shape), indexes, model.y_tables)
    return rebuild(data, z, y)


MUTATIONS = [
    bit_flips,
    byte_edits_crc,
    header_field_crc,
    truncate,
    append,
    random_payloads,
    y_payload_edits,
    z_payload_edits_forged,
    lengths_moved,
    declared_size,
    z_extreme_values_forged,
    y_extreme_values,
]


# ---- the run -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="stop after this many decodes")
    parser.add_argument("--seconds", type=float, default=600, help="or after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=float, default=5.0, help="a decode this long is reported")
    parser.add_argument("--hang", type=float, default=120.0, help="give up on one decode after")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = tiny_model()
    seeds = seed_files(model)
    rng = random.Random(args.seed)
    outcomes = collections.defaultdict(collections.Counter)  # kind -> outcome -> count
    slowest = collections.defaultdict(float)
    escaped = []  # (kind, exception, traceback, data) for non-CodecError exceptions
    slow = []  # (seconds, kind, data)
    start = time.perf_counter()
    cases = 0
    while cases < args.cases and time.perf_counter() - start < args.seconds:
        mutate = MUTATIONS[cases % len(MUTATIONS)]
        kind = mutate.__name__
        data = mutate(rng, rng.choice(seeds), model)
        faulthandler.dump_traceback_later(args.hang, exit=True)
        t0 = time.perf_counter()
        try:
            image = pipeline.decode_array(data, model)
            header = pipeline.read_header(data)
            if image.shape != (header.height, header.width, 3) or image.dtype != np.uint8:
                raise AssertionError(f"decoded {image.dtype} {image.shape} for {header}")
            outcome = "decoded"
        except CodecError as exc:
            outcome = f"{type(exc).__name__}: {_reason(exc)}"
        except Exception as exc:  # noqa: BLE001 - what this script is here to find
            outcome = f"NOT A CodecError: {type(exc).__name__}"
            escaped.append((kind, exc, traceback.format_exc(), data))
        seconds = time.perf_counter() - t0
        faulthandler.cancel_dump_traceback_later()
        cases += 1
        outcomes[kind][outcome] += 1
        slowest[kind] = max(slowest[kind], seconds)
        if seconds >= args.slow:
            slow.append((seconds, kind, data))
    elapsed = time.perf_counter() - start

    print(f"{cases} cases in {elapsed:.0f} s (seed {args.seed}, {len(seeds)} seed files)")
    total = collections.Counter()
    for kind in (m.__name__ for m in MUTATIONS):
        counts = outcomes[kind]
        total.update(counts)
        print(f"\n{kind}: {sum(counts.values())} cases, slowest decode {slowest[kind]:.3f} s")
        for outcome, n in counts.most_common():
            print(f"  {n:6d}  {outcome}")
    print("\nall kinds:")
    for outcome, n in total.most_common():
        print(f"  {n:6d}  {outcome}")
    print(f"\nslowest decode: {max(slowest.values(), default=0):.3f} s")
    print(f"non-CodecError exceptions: {len(escaped)}")
    groups = collections.defaultdict(list)  # one sample per distinct exception
    for kind, exc, tb, data in escaped:
        groups[f"{type(exc).__name__}: {exc}"].append((kind, tb, data))
    for message, hits in groups.items():
        kinds = collections.Counter(kind for kind, _, _ in hits)
        _, tb, data = hits[0]
        print(f"\n--- {len(hits)} x {message}\n    from: {dict(kinds)}")
        print(f"    first file ({len(data)} bytes): {data.hex()}\n{tb}")
    print(f"decodes slower than {args.slow:g} s: {len(slow)}")
    for seconds, kind, data in sorted(slow, reverse=True)[:10]:
        header = _header_or_none(data)
        print(f"  {seconds:.1f} s  {kind}  {header}")
    return 1 if escaped or slow else 0


def _reason(exc: Exception) -> str:
    """The message with numbers and hashes blanked, so that counts group by reason."""
    text = re.sub(r"0x[0-9a-f]+|\b(?=[0-9]*[a-f])[0-9a-f]{8,}\b", "H", str(exc))
    return re.sub(r"\d+(\.\d+)?", "N", text)[:80]


def _header_or_none(data: bytes) -> str:
    try:
        h = pipeline.read_header(data)
    except CodecError:
        return "(header unreadable)"
    return f"{h.width}x{h.height} len_z={h.len_z} len_y={h.len_y}"


if __name__ == "__main__":
    sys.exit(main())
