"""Importing this module registers the .rdc format with Pillow (``register_pillow()``).

>>> import rdcodec.codec.pillow_register  # noqa: F401
>>> Image.open("photo.rdc")
"""

from .pillow_plugin import register_pillow

register_pillow()
