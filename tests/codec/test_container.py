import struct
import zlib

import pytest

from rdcodec.codec import container
from rdcodec.errors import BitstreamError

HEADER = container.Header(
    model_id=1,
    weights_hash=bytes(range(8)),
    height=512,
    width=769,
    quality_milli=3500,
    index_crc=0xDEADBEEF,
)
# The format's golden bytes: if this changes, the format version must change too.
GOLDEN = bytes.fromhex(
    "89524443"
    "01"
    "01"
    "00"
    "0001020304050607"
    "00000200"
    "00000301"
    "0dac"
    "deadbeef"
    "00000004"
    "00000008"
    "aabbccdd"
    "0102030405060708"
)


def test_pack_matches_golden_bytes():
    data = container.pack(HEADER, bytes.fromhex("aabbccdd"), bytes(range(1, 9)))
    assert data[:-4] == GOLDEN
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(GOLDEN)
    assert len(data) == container.OVERHEAD_BYTES + 12


def test_unpack_round_trip():
    data = container.pack(HEADER, b"\x01\x02\x03\x04", b"")
    header, z, y = container.unpack(data)
    assert header == container.Header(1, bytes(range(8)), 512, 769, 3500, 0xDEADBEEF, 4, 0)
    assert header.quality == 3.5
    assert (z, y) == (b"\x01\x02\x03\x04", b"")


def _recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"", "bad magic"),
        (lambda d: b"GIF89a" + d[6:], "bad magic"),
        (lambda d: d[:20], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\x00", "unexpected bytes"),
        (lambda d: d[:4] + b"\x03" + d[5:], "unsupported format version 3"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "CRC-32 mismatch"),
        (lambda d: _recrc(d[:6] + b"\x80" + d[7:-4]), "flags"),
        (lambda d: _recrc(d[:15] + b"\x00\x00\x00\x00" + d[19:-4]), "beyond the limits"),
        (lambda d: _recrc(d[:15] + b"\x00\x01\x00\x01" + d[19:-4]), "beyond the limits"),
        (lambda d: _recrc(d[:23] + b"\x00\x00" + d[25:-4]), "outside 1..16"),
    ],
)
def test_unpack_rejects(mutate, message):
    data = container.pack(HEADER, b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")
    with pytest.raises(BitstreamError, match=message):
        container.unpack(mutate(data))


def test_unpack_rejects_lengths_that_are_not_words():
    body = container.pack(HEADER, b"\x01\x02\x03", b"")[:-4]
    with pytest.raises(BitstreamError, match="32-bit words"):
        container.unpack(_recrc(body))
