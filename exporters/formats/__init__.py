"""Format plugins: how the encoder runs inside Triton."""

from tritonize.exporters.formats.base import EncoderStep, FormatPlugin

__all__ = ["EncoderStep", "FormatPlugin"]
