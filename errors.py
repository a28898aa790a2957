"""One exception hierarchy for everything a user can trigger.

The CLI turns any ``CodecError`` into a one-line message and a non-zero exit code;
anything else escaping is a bug.
"""


class CodecError(Exception):
    """Base class of every error rdcodec reports to users."""

    exit_code = 1


class BitstreamError(CodecError):
    """The bitstream is truncated, corrupted, or of an unsupported format."""

    exit_code = 3


class ImageError(CodecError):
    """The input image cannot be read, or is of a kind rdcodec refuses."""

    exit_code = 4


class ModelError(CodecError):
    """The weights a bitstream needs are missing, or do not match."""

    exit_code = 5


class OutputError(CodecError):
    """The output path cannot be written (exists, or its directory does not)."""

    exit_code = 6


class CodecNotice(UserWarning):
    """Something users should know that did not stop the work (issued with
    ``warnings.warn``; the CLI prints it as one ``rdcodec: notice:`` line)."""
