"""JUnit XML for a gate run, the test-report format CI servers display (Jenkins, GitLab, GitHub
test reporters, Azure DevOps).

Layout: one ``<testsuite name="gate.METHOD">`` per method, with ``tests``, ``failures``,
``errors`` and ``skipped`` counts and the rule as ``<properties>``; inside it one
``<testcase>`` per image, named by the image's path. An image that breaks the rule gets a
``<failure>`` whose message holds the measured share and the threshold; an image that could
not be checked (unreadable, model error) gets an ``<error>``. When ``--max-fail-rate`` lets a
run pass although some images broke the rule, those images are reported as ``<skipped>``
with the same numbers ("tolerated"), so a CI server that fails on any ``<failure>`` agrees
with the gate's exit code. The root ``<testsuites>`` carries the totals.

The file is written atomically (:func:`blackbox_cam.io.output.write_text`): a CI job never reads
half a report.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .job import GateCase, GateReport, MethodVerdict
from ...io.output import write_text


def _failure_message(case: GateCase, report: GateReport) -> str:
    c = case.check
    assert c is not None
    parts = list(c.reasons)
    if c.share_forbidden is not None and not any(r.startswith("forbidden share") for r in parts):
        parts.append(f"forbidden share {c.share_forbidden:.3f} (max-share {report.rule.max_share:g})")
    return "; ".join(parts)


def _case_details(case: GateCase, report: GateReport) -> str:
    c = case.check
    assert c is not None
    lines = [f"image: {case.image}", f"method: {case.method}",
             f"detection: {case.detection}, box {case.box}" if case.detection is not None else "",
             f"predicted: {case.predicted} ({case.label}), score {case.score:.4f}" if case.score is not None else "",
             f"forbidden share: {c.share_forbidden} (max-share {report.rule.max_share:g}); "
             f"forbidden area: {c.forbidden_area}" if c.forbidden_area is not None else "",
             f"map maximum in forbidden region: {c.peak_in_forbidden}" if c.forbidden_area is not None else "",
             f"required share: {c.share_required} (min-share {report.rule.min_share:g}); "
             f"required area: {c.required_area}" if c.required_area is not None else "",
             f"overlay: {case.overlay}" if case.overlay else ""]
    return "\n".join(line for line in lines if line)


def _suite(root: ET.Element, report: GateReport, v: MethodVerdict) -> tuple[int, int, int]:
    cases = report.by_method(v.method)
    tolerated = v.passed
    n_fail = 0 if tolerated else v.failed
    n_skip = v.failed if tolerated else 0
    suite = ET.SubElement(root, "testsuite", name=f"gate.{v.method}", tests=str(len(cases)),
                          failures=str(n_fail), errors=str(v.errors), skipped=str(n_skip),
                          time=f"{sum(c.seconds for c in cases):.3f}")
    props = ET.SubElement(suite, "properties")
    for k, val in (("model", report.model), ("method", v.method), ("forbid", " | ".join(report.forbid)),
                   ("require", " | ".join(report.require)), ("max_share", f"{report.rule.max_share:g}"),
                   ("min_share", f"{report.rule.min_share:g}"), ("max_fail_rate", f"{report.rule.max_fail_rate:g}"),
                   ("fail_rate", f"{v.fail_rate:.6g}"), ("verdict", "passed" if v.passed else "failed")):
        ET.SubElement(props, "property", name=k, value=val)
    classname = f"blackbox-cam.gate.{Path(report.model).stem}.{v.method}"
    for case in cases:
        tc = ET.SubElement(suite, "testcase", classname=classname, name=case.name, time=f"{case.seconds:.3f}")
        if case.error is not None:
            ET.SubElement(tc, "error", message=case.error, type="GateInputError").text = case.error
        elif not case.passed:
            msg = _failure_message(case, report)
            if tolerated:
                ET.SubElement(tc, "skipped", message=f"tolerated ({v.failed}/{len(cases)} images failed, "
                              f"max-fail-rate {report.rule.max_fail_rate:g}): {msg}")
            else:
                ET.SubElement(tc, "failure", message=msg, type="ForbiddenEvidence").text = _case_details(case, report)
        else:
            ET.SubElement(tc, "system-out").text = _case_details(case, report)
    return n_fail, v.errors, n_skip


def junit_xml(report: GateReport) -> str:
    """The JUnit XML text of ``report`` (module docstring for the layout)."""
    root = ET.Element("testsuites", name="blackbox-cam gate")
    totals = [0, 0, 0]
    for v in report.verdicts:
        for i, n in enumerate(_suite(root, report, v)):
            totals[i] += n
    root.set("tests", str(len(report.cases)))
    root.set("failures", str(totals[0]))
    root.set("errors", str(totals[1]))
    root.set("skipped", str(totals[2]))
    root.set("time", f"{report.seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | os.PathLike, report: GateReport) -> Path:
    """Write ``report`` as JUnit XML to ``path`` atomically; returns the path."""
    p = Path(path)
    write_text(p, junit_xml(report))
    return p
