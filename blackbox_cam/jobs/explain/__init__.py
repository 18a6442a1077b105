"""``explain`` on a detector: every chosen detection of each image explained from one query set."""
from .detections import DetectorRun, explain_detector_items

__all__ = ["DetectorRun", "explain_detector_items"]
