"""rdcodec: a learned image codec with a real bitstream.

>>> import rdcodec
>>> data = rdcodec.encode(image, quality=4)      # PIL image or (H, W, 3) uint8 array
>>> image = rdcodec.decode(data)                 # PIL image
>>> result = rdcodec.encode_image(image)         # bytes plus measured bpp, PSNR, ...
>>> rdcodec.register_pillow()                    # Image.open("x.rdc"), im.save("x.rdc")
>>> summary = rdcodec.encode_folder("photos", "coded", engine="ray")  # or "local", jobs=2

The codec functions load on first use (PEP 562), so that ``rdcodec --help`` and the
other commands that do not code images start without importing torch.
"""

from .errors import BitstreamError, CodecError, ImageError, ModelError, OutputError

_PIPELINE = (
    "EncodeResult",
    "Rate",
    "decode",
    "decode_array",
    "encode",
    "encode_image",
    "read_header",
)

__all__ = [
    "BitstreamError",
    "CodecError",
    "ImageError",
    "ModelError",
    "OutputError",
    *_PIPELINE,
    "register_pillow",
    "encode_folder",
    "decode_folder",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _PIPELINE:
        from .codec import pipeline

        return getattr(pipeline, name)
    if name in ("encode_folder", "decode_folder"):
        from .codec import folders

        return getattr(folders, name)
    if name == "register_pillow":
        # Registering imports Pillow's plugin machinery only: torch comes with a decode.
        from .codec.pillow_plugin import register_pillow

        return register_pillow
    raise AttributeError(f"module 'rdcodec' has no attribute {name!r}")
