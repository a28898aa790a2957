"""Folders from Python: ``rdcodec.encode_folder`` / ``decode_folder``, and the engine a
folder run names (``make_engine``: local processes or Ray), for the CLI and the API."""

from __future__ import annotations

from pathlib import Path

from ..errors import CodecError
from .batch import Engine, Settings, Summary, default_jobs, local_engine, run_batch


def make_engine(engine: str, jobs: int | None, threads: int, address: str | None) -> Engine:
    """The engine a folder run names: ``"local"`` (``jobs`` processes) or ``"ray"``."""
    # Named for the API and the command line alike.
    for name, value in (("jobs (-j)", jobs), ("threads (--threads)", threads)):
        whole = isinstance(value, int) and not isinstance(value, bool)
        if (value is not None or name.startswith("threads")) and not (whole and value >= 1):
            raise CodecError(f"{name} must be a whole number of at least 1, got {value!r}")
    if engine == "ray":
        from .ray_engine import ray_engine

        return ray_engine(address, jobs)
    if engine != "local":
        raise CodecError(f"unknown engine {engine!r}: local or ray")
    if address is not None:
        raise CodecError("--address is for --engine ray")
    return local_engine(jobs if jobs is not None else default_jobs(threads))


def encode_folder(
    source: str | Path,
    out_root: str | Path,
    quality: float | None = None,
    *,
    target_bpp: float | None = None,
    model: str | None = None,
    effort: int = 0,
    strip: bool = False,
    force: bool = False,
    engine: str = "local",
    jobs: int | None = None,
    threads: int = 1,
    address: str | None = None,
) -> Summary:
    """Encode every image under ``source`` into the same tree of .rdc files under
    ``out_root``, as ``rdcodec encode DIR OUTDIR`` does. ``engine="ray"`` runs it on Ray
    (``jobs`` actors, at ``address``); the returned ``Summary`` has a row per file."""
    if quality is not None and target_bpp is not None:
        raise CodecError("give quality or target_bpp, not both")
    settings = Settings(
        "encode", quality, target_bpp, model, effort, threads, force=force, strip=strip
    )
    return _run(source, out_root, settings, engine, jobs, address)


def decode_folder(
    source: str | Path,
    out_root: str | Path,
    *,
    force: bool = False,
    engine: str = "local",
    jobs: int | None = None,
    threads: int = 1,
    address: str | None = None,
) -> Summary:
    """Decode every .rdc file under ``source`` into PNGs under ``out_root``."""
    return _run(
        source, out_root, Settings("decode", threads=threads, force=force), engine, jobs, address
    )


def _run(source, out_root, settings: Settings, engine: str, jobs, address) -> Summary:
    engine_run = make_engine(engine, jobs, settings.threads, address)
    return run_batch(Path(source), Path(out_root), settings, engine_run)
