"""``explain`` on a detector: every chosen detection of each image explained from one query set."""
from .detections import explain_detector_items

__all__ = ["explain_detector_items"]
