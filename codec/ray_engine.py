"""Folders on a Ray cluster: ``rdcodec encode DIR OUTDIR --engine ray [--address ADDR]``.

The same per-file work as the local engine (``batch.process``), on Ray actors that each
load the model once. Ray core's actors are enough for a file-to-file job: an
``ActorPool`` hands a file to whichever actor is free (streaming, with no more work in
flight than there are actors), and results come back as they finish. Ray Data would add
pyarrow and pandas for a dataset this job does not have.

Every worker reads its input and writes its output at the same paths the driver sees,
so on a cluster both folders must lie on storage all nodes share (NFS, a mounted bucket),
and every node needs rdcodec installed (``pip install "rdcodec[ray]"``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from ..errors import CodecError
from .batch import Engine, Job, Row, Settings


def _ray():
    try:
        import ray
    except ImportError:
        raise CodecError('--engine ray needs Ray: pip install "rdcodec[ray]"') from None
    return ray


class Coder:
    """One actor: the model of a batch, loaded once, coding one file a call."""

    def __init__(self, settings: Settings) -> None:
        from .batch import init_worker

        init_worker(settings)

    def process(self, job: Job) -> Row:
        from .batch import process

        return process(job)


def ray_engine(address: str | None = None, actors: int | None = None) -> Engine:
    """Code a batch on Ray: on the cluster at ``address`` (``"auto"``: the one this machine
    belongs to), or on a Ray already initialised in this process, or else on a local
    one started here. ``actors`` defaults to the cluster's CPUs over ``--threads``."""

    def run(settings: Settings, jobs: list[Job]) -> Iterator[Row]:
        ray = _ray()
        from ray.util import ActorPool

        if not jobs:
            return
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a local Ray"
                raise CodecError(f"cannot start or reach {where}: {exc}") from None
        threads = max(1, settings.threads)
        count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        remote = ray.remote(num_cpus=threads)(Coder)
        pool = ActorPool([remote.remote(settings) for _ in range(min(count, len(jobs)))])
        yield from pool.map_unordered(lambda actor, job: actor.process.remote(job), jobs)

    return run


# How long a cluster address may take to accept a connection: Ray itself retries an
# unreachable one for minutes, printing a line a second, deaf to Ctrl-C.
CONNECT_SECONDS = 5.0


def _check_reachable(address: str | None) -> None:
    """A ``CodecError`` unless ``address`` (host:port or ray://host:port; not "auto" or
    None, which Ray resolves itself) accepts a TCP connection within CONNECT_SECONDS."""
    if not address or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise CodecError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CodecError(f"cannot reach the Ray cluster at {address}: {reason}") from None
