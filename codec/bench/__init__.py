"""Tools that measure the codec, above it and never imported by the encode/decode path.

- ``runner``: ``rdcodec bench``: RD curves and BD-rates of rdcodec models and the
  classical codecs of ``codec/baselines.py`` (the one codec table), cached per point;
  it runs the parts below.
- ``names``: what a ``--codecs`` name says (rdcodec model or not, its file names).
- ``codecs``: the codec objects by ``--codecs`` name; ``--codecs`` and ``--qualities``.
- ``measure``: images, timed RD points, their cache, worker processes, one torch thread.
- ``checks``: rdcodec's monotonic levels and ``--target-bpp`` summary.
- ``bdrate``: RD curves and BD-rates (light: numpy, ``bjontegaard`` when computing).
- ``report``: BD-rate markdown, CSV rows, the RD plot, strict JSON.
- ``compare``: ``rdcodec compare`` and ``bench --html``: one self-contained HTML page.
- ``sweep``: every image at every quality, coded to real files and measured.
- ``rdplane``: the levels on the distortion-rate plane.
- ``speed``: encode/decode time and memory per image size, and against compressai.
"""
