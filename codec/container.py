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
23      2       quality x 1000 (1000 .. 8000; fractional qualities interpolate)
25      4       CRC-32 of the y table indices (detects a decoder whose network
                output differs from the encoder's, instead of decoding garbage)
29      4       length of the z payload in bytes (multiple of 4)
33      4       length of the y payload in bytes (multiple of 4)
37      n_z     z payload (ANS words, little-endian uint32)
37+n_z  n_y     y payload
end-4   4       CRC-32 of every byte before it
======  ======  ===========================================================
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ..errors import BitstreamError

MAGIC = b"\x89RDC"
FORMAT_VERSION = 1
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

    @property
    def grayscale(self) -> bool:
        return bool(self.flags & FLAG_GRAYSCALE)

    @property
    def quality(self) -> float:
        return self.quality_milli / 1000


def pack(header: Header, z_payload: bytes, y_payload: bytes) -> bytes:
    """Serialise a header and payloads into a complete file (with its CRC)."""
    head = _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
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
    body = head + z_payload + y_payload
    return body + struct.pack(">I", zlib.crc32(body))


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
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported format version {version} (this rdcodec reads version {FORMAT_VERSION})"
        )
    expected = OVERHEAD_BYTES + len_z + len_y
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
    z_start = HEADER_BYTES
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
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported format version {version} (this rdcodec reads version {FORMAT_VERSION})"
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
