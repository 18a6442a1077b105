"""``verify``: does blackbox-cam feed the model what the vendor's own pipeline feeds it?"""
from .expected import Expected, read_expected
from .job import Report, Suspect, suspects, verify

__all__ = ["Expected", "Report", "Suspect", "read_expected", "suspects", "verify"]
