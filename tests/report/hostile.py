"""A comparison whose every text field that comes from a model or a data file carries an XSS payload."""

from __future__ import annotations

from pathlib import Path

from tests.report.factory import binary, run_result, suite_result
from tunegate.compare.models import CompareSettings
from tunegate.pipeline.commands import gate_and_write

XSS = [
    "<script>window.__xss=1;alert(1)</script>",
    "</script><script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    '<a href="javascript:window.__xss=1">click me</a>',
    '<svg onload="window.__xss=1"><circle r="5"/></svg>',
    '"><svg/onload=window.__xss=1>',
    "'-alert(1)-'",
    "{{ 7*7 }} {% raw %}",
]
SUITE_NAME = '<svg onload="alert(1)">tox'  # no "/" (policies address metrics as suite/metric)
BASE_LABEL = '<img src=x onerror="window.__xss=1">base'
CAND_LABEL = "</script><script>window.__xss=1</script>cand"
ACC = {"acc": ("binary", "higher", "mean")}


def build(tmp: Path) -> Path:
    """Write hostile base/candidate runs and a policy, run the gate, return the output folder."""
    n = len(XSS)
    prompts = {f"s{i}": f"prompt {x}" for i, x in enumerate(XSS)}
    outputs = {f"s{i}": f"answer {x}" for i, x in enumerate(XSS)}
    cw_outputs = {f"s{i}": f"toxic {x}" for i, x in enumerate(XSS)}
    base = run_result("base", [
        suite_result("qa", {"acc": binary("1" * n)}, kinds=ACC, prompts=prompts, outputs=outputs, description=XSS[0]),
        suite_result(SUITE_NAME, {"acc": binary("0" * n)}, kinds=ACC, prompts=prompts, content_warning=True),
    ])
    cand = run_result("cand", [
        suite_result("qa", {"acc": binary("0" * n)}, kinds=ACC, prompts=prompts, outputs=outputs),
        suite_result(SUITE_NAME, {"acc": binary("1" * n)}, kinds=ACC, prompts=prompts, outputs=cw_outputs, content_warning=True),
    ], finetune={"step": 5, "recipe": XSS[2], "data_sha256": XSS[3]})
    base.model = base.model.model_copy(update={"label": BASE_LABEL, "model": XSS[4]})
    cand.model = cand.model.model_copy(update={"label": CAND_LABEL})
    base.save(tmp / "base.json")
    cand.save(tmp / "cand.json")
    policy = tmp / "policy.yaml"
    policy.write_text(f"name: hostile\nrules:\n  - metric: qa/acc\n    max_regression: 0.05\n    description: {XSS[5]!r}\n")
    out = tmp / "out"
    gate_and_write(policy, tmp / "base.json", [tmp / "cand.json"], out, settings=CompareSettings(n_resamples=200))
    return out
