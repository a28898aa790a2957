"""What a ``--codecs`` name says, from the string alone (no codec objects, no imports):
whether it is an rdcodec model, and how it appears in file names."""

from __future__ import annotations


def is_rdcodec(name: str) -> bool:
    """Whether a ``--codecs`` name is an rdcodec model (``rdcodec`` or ``rdcodec@MODEL``,
    either with ``+eN``)."""
    return name.partition("+")[0] == "rdcodec" or name.startswith("rdcodec@")


def file_stem(name: str) -> str:
    """A codec's name as a file name: ``rdcodec@hp-gain-n96m128`` -> ``rdcodec-hp-gain-n96m128``."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in name)


def cache_stem(name: str) -> str:
    """The codec part of a cache file's name.

    Every rdcodec model caches under "rdcodec": the settings id holds the weights'
    hash, so models stay apart while "rdcodec" and "rdcodec@<the default>" share.
    """
    return "rdcodec" if is_rdcodec(name) else name
