"""The .rdc file format: a fixed header, two entropy-coded payloads, a CRC-32.

Pure ``struct`` parsing, no numpy or torch. All integers are big-endian.

======  ======  ===========================================================
offset  size    field
======  ======  ===========================================================
0       4       magic ``b"\\x89RDC"`` (the high byte catches text-mode damage)
4       1       format version (1)
5       1       model wire id (see ``rdcodec models``)
6       1       flags: bit 0 = the source was greyscale (decode to one channel);
                other bits reserved, must be 0
7       8       first 8 bytes of the sha256 of the weights file
15      4       image height in pixels (>= 1)
19      4       image width in pixels (>= 1)
23      2       quality x 1000 (1000 .. 16000 here; the model's levels bound it)
25      4       CRC-32 of the y table indices (detects a decoder whose network
                output differs from the encoder's, instead of decoding garbage)
29      4       length of the z payload in bytes (multiple of 4)
33      4       length of the y payload in bytes (multiple of 4)
37      n_z     z payload (ANS words, little-endian uint32)
37+n_z  n_y     y payload
end-4   4       CRC-32 of every byte before it
======  ======  ===========================================================

Format version 2 is version 1 with chunks: what a photo carries besides its pixels.
It is written only when there is something to carry, so a file without metadata or
transparency is the version-1 file it always was. After the header come a 4-byte
length n_c of the chunk section and n_c bytes of chunks, each a 4-byte tag, a 4-byte
length and its data; then the payloads and the CRC as above. Tags: ``ICCP`` (the ICC
profile), ``EXIF`` (the EXIF block, orientation set to 1: the pixels are stored
upright), ``XMP_`` (the XMP packet), ``ALPH`` (the alpha plane, a lossless greyscale
PNG). Each tag appears at most once; an unknown tag is refused, never ignored (a
reader that skipped ``ALPH`` would show the wrong picture).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import BitstreamError

MAGIC = b"\x89RDC"
FORMAT_VERSION = 1
FORMAT_VERSION_CHUNKS = 2  # version 1 plus a chunk section (metadata, alpha)
VERSIONS = (FORMAT_VERSION, FORMAT_VERSION_CHUNKS)
CHUNK_TAGS = (b"ICCP", b"EXIF", b"XMP_", b"ALPH")
_CHUNK = struct.Struct(">4sI")
MAX_CHUNK_BYTES = 1 << 26  # 64 MiB of chunks at most (an alpha plane of a 100 MP image)
_HEADER = struct.Struct(">4sBBB8sIIHIII")
HEADER_BYTES = _HEADER.size
# (offset, size) of each header field, as in the table above (for tools and tests).
FIELDS = {
    "magic": (0, 4),
    "version": (4, 1),
    "model_id": (5, 1),
    "flags": (6, 1),
    "weights_hash": (7, 8),
    "height": (15, 4),
    "width": (19, 4),
    "quality": (23, 2),
    "index_crc": (25, 4),
    "len_z": (29, 4),
    "len_y": (33, 4),
}
assert sum(size for _, size in FIELDS.values()) == HEADER_BYTES
CRC_BYTES = 4
OVERHEAD_BYTES = HEADER_BYTES + CRC_BYTES

# Limits checked before anything is allocated from header fields.
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 28
# Quality x 1000; a model's own range (1 to its number of levels) is checked by the
# pipeline once it knows the model.
QUALITY_MIN, QUALITY_MAX = 1000, 16000

FLAG_GRAYSCALE = 0x01
KNOWN_FLAGS = FLAG_GRAYSCALE


@dataclass(frozen=True)
class Header:
    """Every field of the header but the magic and version."""

    model_id: int
    weights_hash: bytes  # 8 bytes
    height: int
    width: int
    quality_milli: int
    index_crc: int
    len_z: int = 0
    len_y: int = 0
    flags: int = 0
    chunks: tuple[tuple[bytes, bytes], ...] = ()  # (tag, data) in file order

    def chunk(self, tag: bytes) -> bytes | None:
        """The data of the chunk ``tag``, or None."""
        return next((data for t, data in self.chunks if t == tag), None)

    @property
    def chunk_bytes(self) -> int:
        """Bytes the chunk section takes in the file (0 for a version-1 file)."""
        return 4 + sum(_CHUNK.size + len(d) for _, d in self.chunks) if self.chunks else 0

    @property
    def grayscale(self) -> bool:
        return bool(self.flags & FLAG_GRAYSCALE)

    @property
    def quality(self) -> float:
        return self.quality_milli / 1000


def pack(header: Header, z_payload: bytes, y_payload: bytes) -> bytes:
    """Serialise a header and payloads into a complete file (with its CRC): version 2
    when the header has chunks, else version 1."""
    _check_chunks(header.chunks)
    head = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION_CHUNKS if header.chunks else FORMAT_VERSION,
        header.model_id,
        header.flags,
        header.weights_hash,
        header.height,
        header.width,
        header.quality_milli,
        header.index_crc,
        len(z_payload),
        len(y_payload),
    )
    if header.chunks:
        section = b"".join(_CHUNK.pack(t, len(d)) + d for t, d in header.chunks)
        head += struct.pack(">I", len(section)) + section
    body = head + z_payload + y_payload
    return body + struct.pack(">I", zlib.crc32(body))


def _check_chunks(chunks) -> None:
    tags = [t for t, _ in chunks]
    if len(set(tags)) != len(tags):
        raise BitstreamError("corrupted bitstream: a chunk appears twice")
    for tag in tags:
        if tag not in CHUNK_TAGS:
            raise BitstreamError(f"unsupported chunk {tag!r} (written by a newer rdcodec?)")
    if sum(_CHUNK.size + len(d) for _, d in chunks) > MAX_CHUNK_BYTES:
        raise BitstreamError(f"chunks over {MAX_CHUNK_BYTES >> 20} MiB")


def read_chunks(section: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The (tag, data) pairs of a chunk section, checked."""
    chunks, at = [], 0
    while at < len(section):
        if at + _CHUNK.size > len(section):
            raise BitstreamError("corrupted bitstream: a chunk header runs past its section")
        tag, size = _CHUNK.unpack_from(section, at)
        at += _CHUNK.size
        if at + size > len(section):
            raise BitstreamError("corrupted bitstream: a chunk runs past its section")
        chunks.append((tag, section[at : at + size]))
        at += size
    _check_chunks(chunks)
    return tuple(chunks)


def chunk_section_length(data: bytes) -> int:
    """The length n_c of a version-2 file's chunk section (0 for version 1), from the
    bytes after the header; checked against the limit."""
    if data[4] != FORMAT_VERSION_CHUNKS:
        return 0
    if len(data) < HEADER_BYTES + 4:
        raise BitstreamError("truncated bitstream: the chunk section's length is missing")
    (n,) = struct.unpack_from(">I", data, HEADER_BYTES)
    if n > MAX_CHUNK_BYTES:
        raise BitstreamError(f"bitstream declares {n:,} bytes of chunks, over the limit")
    return n


def unpack(data: bytes) -> tuple[Header, bytes, bytes]:
    """Parse and validate a file; raises ``BitstreamError`` with the reason."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not an rdcodec bitstream (bad magic number)")
    if len(data) < OVERHEAD_BYTES:
        raise BitstreamError(
            f"truncated bitstream: {len(data)} bytes, a header alone is {OVERHEAD_BYTES}"
        )
    fields = _HEADER.unpack_from(data)
    version, len_z, len_y = fields[1], fields[-2], fields[-1]
    if version not in VERSIONS:
        raise BitstreamError(
            f"unsupported format version {version} (this rdcodec reads versions 1 and 2)"
        )
    n_c = chunk_section_length(data)
    extra = 4 + n_c if version == FORMAT_VERSION_CHUNKS else 0
    expected = OVERHEAD_BYTES + extra + len_z + len_y
    if len(data) < expected:
        raise BitstreamError(f"truncated bitstream: {len(data)} bytes, header says {expected}")
    if len(data) > expected:
        raise BitstreamError(
            f"corrupted bitstream: {len(data) - expected} unexpected bytes after the end"
        )
    (crc,) = struct.unpack_from(">I", data, len(data) - CRC_BYTES)
    if crc != zlib.crc32(data[: len(data) - CRC_BYTES]):
        raise BitstreamError("corrupted bitstream: CRC-32 mismatch")
    # The CRC matched, so the fields are what an encoder wrote; still check them, since
    # a hand-made file can carry a valid CRC.
    header = parse_header(data)
    if extra:
        chunks = read_chunks(data[HEADER_BYTES + 4 : HEADER_BYTES + extra])
        header = Header(**{**header.__dict__, "chunks": chunks})
    z_start = HEADER_BYTES + extra
    return header, data[z_start : z_start + len_z], data[z_start + len_z : z_start + len_z + len_y]


def parse_header(head: bytes) -> Header:
    """The header of a file's first ``HEADER_BYTES`` bytes, every field checked, without
    the payloads or the CRC (``unpack`` checks those): what a reader that only wants
    the size and model needs. Raises ``BitstreamError`` with the reason."""
    if len(head) < 4 or head[:4] != MAGIC:
        raise BitstreamError("not an rdcodec bitstream (bad magic number)")
    if len(head) < HEADER_BYTES:
        raise BitstreamError(f"truncated bitstream: {len(head)} bytes, a header is {HEADER_BYTES}")
    (
        _,
        version,
        model_id,
        flags,
        weights_hash,
        height,
        width,
        quality_milli,
        index_crc,
        len_z,
        len_y,
    ) = _HEADER.unpack_from(head)
    if version not in VERSIONS:
        raise BitstreamError(
            f"unsupported format version {version} (this rdcodec reads versions 1 and 2)"
        )
    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(f"unsupported bitstream flags {flags:#04x}")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE) or height * width > MAX_PIXELS:
        raise BitstreamError(f"bitstream declares an image of {width}x{height}, beyond the limits")
    if not QUALITY_MIN <= quality_milli <= QUALITY_MAX:
        raise BitstreamError(
            f"bitstream declares quality {quality_milli / 1000}, outside 1..{QUALITY_MAX // 1000}"
        )
    if len_z % 4 or len_y % 4:
        raise BitstreamError("corrupted bitstream: payload lengths are not whole 32-bit words")
    return Header(
        model_id, weights_hash, height, width, quality_milli, index_crc, len_z, len_y, flags
    )
