"""The heat-map gate for CI (:mod:`.job`): fail when a model relies on pixels it must not use.
Regions from the command line (:mod:`.regions`) and the JUnit XML a CI server reads (:mod:`.junit`)."""
from .job import GateReport, GateRule, check_inputs, run_gate

__all__ = ["GateReport", "GateRule", "check_inputs", "run_gate"]
