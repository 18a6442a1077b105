"""``global``: dataset-level explanations (PEPPR). The job (:mod:`.job`) explains every image
through an executor (:mod:`.executors`: local or Ray) one unit at a time (:mod:`.units`), aligns
and aggregates the maps (:mod:`.maps`) and draws them (:mod:`.plots`)."""
from .job import run_global

__all__ = ["run_global"]
