"""rdcodec: a learned image codec with a real bitstream.

>>> import rdcodec
>>> data = rdcodec.encode(image, quality=4)      # PIL image or (H, W, 3) uint8 array
>>> image = rdcodec.decode(data)                 # PIL image
>>> result = rdcodec.encode_image(image)         # bytes plus measured bpp, PSNR, ...
"""

from .codec.pipeline import (
    EncodeResult,
    Rate,
    decode,
    decode_array,
    encode,
    encode_image,
    read_header,
)
from .errors import BitstreamError, CodecError, ImageError, ModelError, OutputError

__all__ = [
    "BitstreamError",
    "CodecError",
    "EncodeResult",
    "ImageError",
    "ModelError",
    "OutputError",
    "Rate",
    "decode",
    "decode_array",
    "encode",
    "encode_image",
    "read_header",
]
__version__ = "0.1.0"
