"""junit.xml: one testsuite per candidate, one testcase per rule.

A failed rule is a <failure>; an inconclusive rule is <skipped> (or a
<failure> in strict mode, where it fails the gate); an incomplete one (no value
to judge, errored samples above the allowed share) is an <error>. Built with
ElementTree so every attribute and text node is escaped; characters that XML
1.0 cannot carry are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from tunegate.compare.models import Comparison

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: object) -> str:
    return _XML_BAD.sub("", str(text))


def render_junit(comparison: Comparison) -> str:
    verdict = comparison.verdict
    stamp = comparison.created_at[:19] or "1970-01-01T00:00:00"
    root = ET.Element("testsuites", name="tunegate gate")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    policy_name, policy_sha256, strict = (verdict.policy_name, verdict.policy_sha256, verdict.strict) if verdict else ("", "", False)
    for cv in verdict.candidates if verdict else []:
        suite = ET.SubElement(root, "testsuite", name=_clean(f"tunegate.{cv.candidate}"), timestamp=stamp, time="0")
        props = ET.SubElement(suite, "properties")
        for key, value in (("candidate", cv.candidate), ("verdict", cv.status), ("policy", policy_name),
                     ("policy_sha256", policy_sha256), ("strict", str(strict).lower())):
            ET.SubElement(props, "property", name=key, value=_clean(value))
        cc = next((c for c in comparison.candidates if c.model.label == cv.candidate), None)
        mismatch = [f"suite '{s.name}': {'; '.join(s.mismatch)}" for s in (cc.suites if cc else []) if s.mismatch]
        if mismatch:  # compared with --allow-suite-mismatch: say so where CI looks
            ET.SubElement(props, "property", name="suite_mismatch", value=_clean("; ".join(mismatch)))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        cases = [(f"{o.metric} {o.kind} {o.threshold:g}", o.status, o.reason) for o in cv.outcomes]
        if cv.error_budget:
            cases.append(("errored-sample budget", "incomplete", "; ".join(cv.error_budget)))
        for name, status, reason in cases:
            case = ET.SubElement(suite, "testcase", name=_clean(name), classname=_clean(f"tunegate.gate.verdict.{cv.candidate}"), time="0")
            counts["tests"] += 1
            if status == "fail" or (status == "inconclusive" and strict):
                el = ET.SubElement(case, "failure", message=_clean(reason), type=status)
                el.text = _clean(reason)
                counts["failures"] += 1
            elif status == "inconclusive":
                ET.SubElement(case, "skipped", message=_clean(f"inconclusive: {reason}"))
                counts["skipped"] += 1
            elif status == "incomplete":
                el = ET.SubElement(case, "error", message=_clean(reason), type="incomplete")
                el.text = _clean(reason)
                counts["errors"] += 1
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
