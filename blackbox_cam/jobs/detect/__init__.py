"""``detect``: a detector's boxes in the image's pixels, printed, recorded and drawn."""
from .job import DetectRun, run, settings

__all__ = ["DetectRun", "run", "settings"]
