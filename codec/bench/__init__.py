"""Tools that measure the codec, above it and never imported by the encode/decode path.

- ``runner``: ``rdcodec bench``: RD curves and BD-rates of rdcodec models and the
  classical codecs of ``codec/baselines.py`` (the one codec table), cached per point.
- ``compare``: ``rdcodec compare`` and ``bench --html``: one self-contained HTML page.
- ``sweep``: every image at every quality, coded to real files and measured.
- ``rdplane``: the levels on the distortion-rate plane.
- ``speed``: encode/decode time and memory per image size, and against compressai.
"""
