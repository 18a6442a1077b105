"""``compare``: several methods on the same images, scored by every metric (:mod:`.job`), and the
report that shows them (:mod:`.report`: HTML, CSV, JSON, panels)."""
from .job import CompareResult, ImageResult, MetricSettings, compare_images, read_boxes, summarise
from .report import write_report

__all__ = ["CompareResult", "ImageResult", "MetricSettings", "compare_images", "read_boxes", "summarise",
           "write_report"]
