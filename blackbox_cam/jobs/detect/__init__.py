"""``detect``: a detector's boxes in the image's pixels, printed, recorded and drawn."""
from .job import run, settings

__all__ = ["run", "settings"]
