"""``detect``: a detector's boxes in the image's pixels, printed, recorded and drawn."""
from .job import ImageDetections, detect_image

__all__ = ["ImageDetections", "detect_image"]
