"""Human preference ratings of an audit's pairwise suites: `tunegate rate export` and `tunegate rate import`.

Export reads a finished audit folder (its comparison.json and the runs beside
it), collects every pair of base and candidate answers of every `pairwise`
suite, shuffles them with a seed and, per pair, puts base or candidate in slot
A at random. It writes the blinded sheet (rating_sheet.html: no model names,
one self-contained offline page, `tunegate.report.rating_sheet`), the same
pairs as sheet.csv for spreadsheet raters, and key.json, which alone maps each
opaque item id back to (candidate, suite, sample, which model is A). The key
stays with whoever runs the study; the HTML never holds it.

Import reads the raters' JSONL files (one line per rating: sheet, item, rater,
rating a / b / tie; a CSV with the same columns works too), translates each
rating through the key into win / tie / loss for the candidate, and per pair
takes the raters' modal verdict (a shared mode is a tie). From these it
computes the same pairwise figures as the judge (`tunegate.compare.pairwise`:
win rate with its exact interval, tie rate, ties split, per category), the
inter-rater agreement (Cohen's kappa for two raters, Fleiss' for more, on the
pairs every rater rated) and the judge-human agreement (Cohen's kappa over
win / tie / loss on the pairs both decided). The figures are written to
human_ratings.json beside the key and, when the audit folder is at hand,
attached to its comparison and the report re-rendered, so the report shows
judge and human side by side.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tunegate.compare.comparison import compare_metric
from tunegate.compare.models import Comparison
from tunegate.compare.pairwise import answer_text, count, outcome_metrics
from tunegate.compare.pairwise_models import HumanRatings, PairOutcome
from tunegate.compare.stats.agreement import cohen_kappa, fleiss_kappa
from tunegate.core.data import iter_jsonl
from tunegate.core.errors import UserError
from tunegate.core.io import atomic_write_text
from tunegate.pipeline.commands import runs_for_report
from tunegate.report import write_outputs
from tunegate.report.rating_sheet import SheetItem, render_rating_sheet

SHEET_HTML, SHEET_CSV, KEY_FILE, HUMAN_FILE = "rating_sheet.html", "sheet.csv", "key.json", "human_ratings.json"
KEY_SCHEMA = 1
RATINGS = ("a", "tie", "b")
OUTCOMES = ("win", "tie", "loss")


def _pairs(comparison: Comparison, folder: Path) -> list[dict[str, Any]]:
    """Every (candidate, pairwise suite, sample) with both answers, in a fixed order before shuffling."""
    runs = runs_for_report(comparison, folder)
    base_run = runs.get(comparison.base.label)
    out = []
    for cand in comparison.candidates:
        run = runs.get(cand.model.label)
        for sc in cand.suites:
            if sc.pairwise is None:
                continue
            if base_run is None or run is None:
                raise UserError(f"{folder}: the run results of {comparison.base.label} and {cand.model.label} are needed "
                                "for their answers, and were not found beside the report")
            bs, cs = base_run.suite(sc.name), run.suite(sc.name)
            if bs is None or cs is None:
                continue
            cand_samples = {r.id: r for r in cs.samples}
            for r in bs.samples:
                b, _ = answer_text(r)
                c, _ = answer_text(cand_samples.get(r.id))
                if b is not None and c is not None:
                    out.append({"candidate": cand.model.label, "suite": sc.name, "sample_id": r.id,
                                "prompt": r.sample.input, "base": b, "cand": c})
    return out


def export_sheet(audit_dir: Path, out: Path, *, seed: int = 0, title: str = "Which answer is better?") -> dict[str, Path]:
    """Write rating_sheet.html, sheet.csv and key.json under `out`; a UserError when the audit has no pairwise suite."""
    audit_dir = Path(audit_dir)
    comparison = Comparison.load(audit_dir)
    pairs = _pairs(comparison, audit_dir)
    if not pairs:
        raise UserError(f"{audit_dir}: no pairwise suite with answers from both models; the rating sheet rates the pairs "
                        "of `pairwise` suites (docs/pairwise.md)")
    rng = random.Random(seed)
    rng.shuffle(pairs)
    digest = hashlib.sha256(json.dumps([[p["candidate"], p["suite"], p["sample_id"]] for p in pairs]).encode())
    digest.update(f"{seed}|{comparison.created_at}".encode())
    sheet_id = digest.hexdigest()[:16]
    items, key = [], {}
    for k, p in enumerate(pairs, 1):
        item = f"item-{k:04d}"
        a_is_base = rng.random() < 0.5
        items.append(SheetItem(item=item, prompt=p["prompt"], answer_a=p["base"] if a_is_base else p["cand"],
                               answer_b=p["cand"] if a_is_base else p["base"]))
        key[item] = {"candidate": p["candidate"], "suite": p["suite"], "sample_id": p["sample_id"],
                     "a": "base" if a_is_base else "candidate"}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / SHEET_HTML, "csv": out / SHEET_CSV, "key": out / KEY_FILE}
    atomic_write_text(paths["html"], render_rating_sheet(sheet_id, title, items))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["sheet", "item", "prompt", "answer_a", "answer_b", "rater", "rating"])
    for it in items:
        w.writerow([sheet_id, it.item, it.prompt, it.answer_a, it.answer_b, "", ""])
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["key"], json.dumps({"schema_version": KEY_SCHEMA, "sheet": sheet_id, "seed": seed,
                                                "audit_dir": str(audit_dir.resolve()), "items": key}, indent=1) + "\n")
    return paths


# ---- import ------------------------------------------------------------------------------------


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) of a JSONL or CSV ratings file; a UserError naming the file and line otherwise."""
    try:
        if path.suffix.lower() == ".csv":
            text = path.read_text(encoding="utf-8")
            return [(i + 2, dict(r)) for i, r in enumerate(csv.DictReader(io.StringIO(text)))
                    if (r.get("rating") or "").strip()]
        return list(iter_jsonl(path, unit="line"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ratings: {exc}") from None


def read_ratings(paths: list[Path], key: dict[str, Any]) -> dict[str, dict[str, str]]:
    """item -> rater -> outcome for the candidate (win / tie / loss); a rater's last rating of an item counts."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for path in paths:
        for line, row in _rows(Path(path)):
            where = f"{path}: line {line}"
            if str(row.get("sheet", "")) != key["sheet"]:
                raise UserError(f"{where}: sheet {row.get('sheet')!r} is not this key's sheet {key['sheet']!r}; "
                                "give the key.json exported with the sheet these ratings came from")
            item, rater = str(row.get("item", "")), str(row.get("rater", "")).strip()
            rating = str(row.get("rating", "")).strip().lower()
            if item not in key["items"]:
                raise UserError(f"{where}: item: unknown item {item!r}")
            if not rater:
                raise UserError(f"{where}: rater: missing (every rating names its rater)")
            if rating not in RATINGS:
                raise UserError(f"{where}: rating: {rating!r}; use a, tie or b")
            a_side = key["items"][item]["a"]
            if rating == "tie":
                outcome = "tie"
            else:
                favoured = a_side if rating == "a" else ("candidate" if a_side == "base" else "base")
                outcome = "win" if favoured == "candidate" else "loss"
            out[item][rater] = outcome
    return out


def consensus(votes: list[str]) -> str:
    """The modal outcome of one pair's ratings; a mode shared by several outcomes is a tie."""
    top = Counter(votes).most_common()
    return top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else "tie"


def human_ratings(per_item: dict[str, dict[str, str]], judge: dict[str, PairOutcome], categories: dict[str, str | None],
                  confidence: float = 0.95, seed: int = 0) -> tuple[HumanRatings, list[PairOutcome]]:
    """One candidate-suite group: `per_item` maps sample id -> rater -> outcome. Returns the figures and the outcomes."""
    raters = sorted({r for votes in per_item.values() for r in votes})
    outcomes = [PairOutcome(sample_id=sid, category=categories.get(sid), outcome=consensus(list(v.values())))  # type: ignore[arg-type]
                for sid, v in sorted(per_item.items())]
    h = HumanRatings(raters=raters, n_ratings=sum(len(v) for v in per_item.values()),
                     counts=count(outcomes, confidence, seed))
    if len(raters) >= 2:
        full = [v for v in per_item.values() if all(r in v for r in raters)]
        h.kappa_pairs, h.kappa_raters = len(full), len(raters)
        if len(raters) == 2:
            h.kappa_method = "cohen"
            h.kappa = cohen_kappa([v[raters[0]] for v in full], [v[raters[1]] for v in full], OUTCOMES)
        else:
            h.kappa_method = "fleiss"
            h.kappa = fleiss_kappa([[v[r] for r in raters] for v in full], OUTCOMES) if full else None
        if not full:
            h.note = "no pair was rated by every rater, so there is no inter-rater agreement"
    both = [(o.outcome, judge[o.sample_id].outcome) for o in outcomes
            if o.sample_id in judge and judge[o.sample_id].outcome != "errored"]
    if both:
        h.judge_pairs = len(both)
        h.judge_agreement = sum(a == b for a, b in both) / len(both)
        h.judge_kappa = cohen_kappa([a for a, _ in both], [b for _, b in both], OUTCOMES)
    return h, outcomes


def import_ratings(paths: list[Path], *, key_path: Path | None = None, audit_dir: Path | None = None,
                   out: Path | None = None) -> dict[str, Any]:
    """`tunegate rate import`: figures per (candidate, suite), written to human_ratings.json; the report re-rendered
    with them when the audit folder (default: the one the key names) holds a complete report set."""
    if not paths:
        raise UserError("give at least one ratings file (JSONL from the rating sheet, or the sheet's CSV filled in)")
    key_path = Path(key_path) if key_path is not None else Path(paths[0]).parent / KEY_FILE
    if not key_path.is_file():
        raise UserError(f"{key_path}: key file not found; pass --key with the key.json written by `tunegate rate export`")
    try:
        key = json.loads(key_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{key_path}: not a rating key: {exc}") from None
    if not isinstance(key, dict) or key.get("schema_version") != KEY_SCHEMA or not isinstance(key.get("items"), dict):
        raise UserError(f"{key_path}: not a rating key written by `tunegate rate export` (schema {KEY_SCHEMA})")
    ratings = read_ratings(paths, key)
    if not ratings:
        raise UserError("the ratings files hold no rating")
    groups: dict[tuple[str, str], dict[str, dict[str, str]]] = defaultdict(dict)
    for item, votes in ratings.items():
        k = key["items"][item]
        groups[(k["candidate"], k["suite"])][k["sample_id"]] = votes
    audit = Path(audit_dir) if audit_dir is not None else Path(key.get("audit_dir", ""))
    comparison = Comparison.load(audit) if (audit / "comparison.json").is_file() else None
    report: dict[str, Any] = {"sheet": key["sheet"], "ratings_files": [str(p) for p in paths], "groups": []}
    for (cand_label, suite), per_item in sorted(groups.items()):
        sc = None
        if comparison is not None:
            cand = next((c for c in comparison.candidates if c.model.label == cand_label), None)
            sc = cand.suite(suite) if cand is not None else None
        pw = sc.pairwise if sc is not None else None
        judge = {o.sample_id: o for o in pw.outcomes} if pw is not None else {}
        cats = {sid: o.category for sid, o in judge.items()}
        settings = comparison.settings if comparison is not None else None
        h, outcomes = human_ratings(per_item, judge, cats, settings.confidence if settings else 0.95,
                                    settings.seed if settings else 0)
        base_m, cand_m = outcome_metrics(outcomes)
        metrics = ([compare_metric(suite, b, c, settings).model_dump(mode="json") for b, c in zip(base_m, cand_m, strict=True)]
                   if settings is not None else [])
        if pw is not None:
            pw.human = h
        report["groups"].append({"candidate": cand_label, "suite": suite, "human": h.model_dump(mode="json"),
                                 "metrics": metrics})
    out_path = Path(out) if out is not None else key_path.parent / HUMAN_FILE
    atomic_write_text(out_path, json.dumps(report, indent=1, allow_nan=False) + "\n")
    report["written"] = str(out_path)
    if comparison is not None:
        write_outputs(comparison, audit, runs_for_report(comparison, audit))
        report["report"] = str(audit)
    return report
