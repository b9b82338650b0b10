"""``medisynth runs compare RUN...``: several runs side by side (a terminal table and an HTML page).

Per run: model, classes, image size, training budget and how far it got (step, epoch, minutes), the
last logged training figures (``metrics.jsonl``), the latest evaluation, and the last sample grid.

The latest evaluation of a run is the newest ``metrics.json`` (by its ``created`` time) among
``RUN/*/metrics.json`` (``medisynth evaluate --fake RUN --out RUN/eval``) and the ``--report``
folders whose ``inputs.fake`` is that run.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from medisynth.errors import MedisynthError
from medisynth.io import atomic_write_text, read_json
from medisynth.models.ada import CEILING_WARNING_KEY, ADAHyper, AdaptiveAugment
from medisynth.report.format import MISSING, format_number
from medisynth.runs import Run, read_metrics
from medisynth.sampling.writer import SAMPLE_JSON
from medisynth.training.checkpoint import STATE_JSON

#: evaluation figures shown, as (label, path into metrics.json); the first feature space that ran is used
EVALUATION_FIGURES = (
    ("FID", ("distribution", "*", "fid")),
    ("KID", ("distribution", "*", "kid_mean")),
    ("precision", ("distribution", "*", "precision")),
    ("recall", ("distribution", "*", "recall")),
    ("CAS", ("cas", "overall")),
    ("near-copies", ("memorization", "pixel", "fraction_flagged")),
)


@dataclass
class RunSummary:
    """What ``runs compare`` shows of one run."""

    path: Path
    model: str
    classes: list[str]
    image_size: Any
    budget: str
    step: Optional[int]
    epoch: Optional[float]
    minutes: Optional[float]
    final: dict[str, float] = field(default_factory=dict)  # the last metrics.jsonl record's figures
    evaluation: Optional[dict[str, Any]] = None  # label -> value, plus "space", "report", "created"
    warnings: Optional[list[str]] = None  # the trainer's warnings in the last record; None: the run was not watched
    grid: Optional[Path] = None


def summarise_run(path: Path | str, reports: Iterable[Path | str] = ()) -> RunSummary:
    """One run's summary (``reports``: evaluate folders that may have evaluated it)."""
    return _summarise(path, {Path(r): _evaluated_run(r) for r in reports})


def _summarise(path: Path | str, evaluated: dict[Path, Optional[Path]]) -> RunSummary:
    """``summarise_run`` with each report's evaluated run already looked up (``compare_runs`` does it once)."""
    run = Run.open(path)
    config = run.config
    budget = ", ".join(f"{k} {config[k]}" for k in ("epochs", "steps", "minutes") if config.get(k) is not None) or "?"
    sub = next(iter(run.class_runs().values()), None) if run.per_class else run  # per-class: the first class's figures
    state = _state(sub) if sub is not None else {}
    records = read_metrics(sub.path) if sub is not None else []
    final = {k: float(v) for k, v in (records[-1] if records else {}).items()
             if k not in ("step", "epoch", "seconds") and isinstance(v, (int, float)) and not isinstance(v, bool)}
    elapsed = state.get("elapsed")
    return RunSummary(
        path=run.path, model=run.model_name + (" (per class)" if run.per_class else ""),
        classes=run.class_names or [], image_size=run.spec.get("image_size"), budget=budget,
        step=state.get("step"), epoch=state.get("epoch"), minutes=elapsed / 60 if isinstance(elapsed, (int, float)) else None,
        final=final, evaluation=_latest_evaluation(run, evaluated), grid=_last_grid(run), warnings=_last_warnings(run),
    )


def _last_warnings(run: Run) -> Optional[list[str]]:
    """The collapse and ADA-ceiling warnings of the last metrics.jsonl record (of every class of a per-class run),
    or None when no record carries either field (models the trainer does not watch, runs from before the checks)."""
    names = run.class_names or []
    parts = ([(f" (class {names[i] if i < len(names) else i})", sub) for i, sub in run.class_runs().items()]
             if run.per_class else [("", run)])
    warnings, watched = [], False
    for which, part in parts:
        records = read_metrics(part.path)
        last = records[-1] if records else {}
        ceiling = _ada_ceiling(part, last)
        watched = watched or "collapse_warning" in last or ceiling is not None
        if last.get("collapse_warning"):  # the monitor names the classes (a per-class run's own)
            warnings.append(f"collapse of {', '.join(map(str, last['collapse_warning']))}")
        if ceiling:
            warnings.append(f"ADA at its ceiling{which}")
    return warnings if watched else None


def _ada_ceiling(run: Run, last: dict) -> Optional[bool]:
    """The record's ADA-ceiling check; for a run trained before the trainer logged it, the same check made here from
    its logged p and its augmentation settings; None when p does not adapt or was not logged."""
    if CEILING_WARNING_KEY in last:
        return bool(last[CEILING_WARNING_KEY])
    hyper = run.info.get("hyper") or {}
    if "ada_p" not in last or "diffaugment" not in hyper:
        return None
    augment = AdaptiveAugment(hyper["diffaugment"], hyper.get("ada_target", ADAHyper.ada_target))
    return augment.at_ceiling(last["ada_p"]) if augment.adaptive else None


def compare_runs(runs: Iterable[Path | str], reports: Iterable[Path | str] = ()) -> list[RunSummary]:
    """Summaries of ``runs`` in the order given (at least two). A report that evaluated none of them is refused:
    left out in silence, it would read as a run never evaluated."""
    runs, reports = list(runs), list(reports)
    if len(runs) < 2:
        raise MedisynthError("runs compare: give two or more run folders")
    resolved = {Path(r).resolve() for r in runs}
    for report in reports:
        if not (Path(report) / "metrics.json").is_file():
            raise MedisynthError(f"--report {report}: no metrics.json there; give a `medisynth evaluate` --out folder")
    evaluated = {Path(report): _evaluated_run(report) for report in reports}  # each report's files read once
    for report, run in evaluated.items():
        if run not in resolved:
            fake = (read_json(Path(report) / "metrics.json").get("inputs") or {}).get("fake")
            raise MedisynthError(
                f"--report {report}: it evaluated {fake}, which is none of the runs compared nor a sample folder of "
                "one (paths are read from the folder you run this in, as `medisynth evaluate` recorded them); "
                "leave it out or compare that run")
    return [_summarise(r, evaluated) for r in runs]


def _evaluated_run(report: Path | str) -> Optional[Path]:
    """The run a `medisynth evaluate` report judged, resolved: its --fake folder when that is a run, else the run that
    a `medisynth sample` folder records in its sample.json; None when it names neither."""
    fake = (read_json(Path(report) / "metrics.json").get("inputs") or {}).get("fake")
    if not fake:
        return None
    sampled = Path(fake) / SAMPLE_JSON
    if sampled.is_file():
        run = read_json(sampled).get("run")
        return Path(run).resolve() if run else None
    return Path(fake).resolve()


def _state(run: Run) -> dict[str, Any]:
    try:
        return read_json(run.latest_checkpoint() / STATE_JSON)
    except MedisynthError:
        return {}


def _last_grid(run: Run) -> Optional[Path]:
    folders = [run.samples] + ([sub.samples for sub in run.class_runs().values()] if run.per_class else [])
    grids = sorted((p for folder in folders if folder.is_dir() for p in folder.glob("step-*.png")),
                   key=lambda p: (p.name, str(p)))
    return grids[-1] if grids else None


def _latest_evaluation(run: Run, evaluated: dict[Path, Optional[Path]]) -> Optional[dict[str, Any]]:
    candidates = [p / "metrics.json" for p in run.path.iterdir() if (p / "metrics.json").is_file()]
    resolved = run.path.resolve()
    candidates += [report / "metrics.json" for report, judged in evaluated.items() if judged == resolved]
    found = [(read_json(p), p) for p in candidates]
    if not found:
        return None
    metrics, path = max(found, key=lambda item: str(item[0].get("created", "")))
    spaces = [s for s, v in (metrics.get("distribution") or {}).items() if isinstance(v, dict)]
    space = spaces[0] if spaces else None
    out: dict[str, Any] = {"report": str(path.parent), "created": metrics.get("created"), "space": space}
    for label, keys in EVALUATION_FIGURES:
        value: Any = metrics
        for key in keys:
            value = value.get(space if key == "*" else key) if isinstance(value, dict) else None
        out[label] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return out


# -- rendering -------------------------------------------------------------------------------------
def table_rows(summaries: list[RunSummary]) -> list[tuple[str, list[str]]]:
    """(row label, one cell per run): the same rows for the terminal and the HTML page."""
    rows: list[tuple[str, list[str]]] = [
        ("model", [s.model for s in summaries]),
        ("classes", [f"{len(s.classes)}: {', '.join(s.classes)}" for s in summaries]),
        ("image size", [format_number(s.image_size) for s in summaries]),
        ("budget", [s.budget for s in summaries]),
        ("trained", [f"step {format_number(s.step)}, epoch {format_number(s.epoch)}, {format_number(s.minutes)} min" for s in summaries]),
    ]
    keys = sorted({k for s in summaries for k in s.final})
    rows += [(f"final {k}", [format_number(s.final.get(k)) for s in summaries]) for k in keys]
    rows.append(("warnings at the last check", [MISSING if s.warnings is None else "; ".join(s.warnings) or "none"
                                         for s in summaries]))
    rows.append(("evaluation", [f"{e['report']} ({e['created']}, {e['space']})" if e else "none found"
                                for e in (s.evaluation for s in summaries)]))
    for label, _ in EVALUATION_FIGURES:
        rows.append((label, [format_number((s.evaluation or {}).get(label)) for s in summaries]))
    return rows


def rich_table(summaries: list[RunSummary]):
    from rich.table import Table

    table = Table(title="medisynth runs compare")
    table.add_column("")
    for s in summaries:
        table.add_column(s.path.name, overflow="fold")
    for label, cells in table_rows(summaries):
        table.add_row(label, *cells)
    return table


def html_page(summaries: list[RunSummary]) -> str:
    """One self-contained page (grids inline as base64, no scripts)."""
    head = "".join(f"<th>{html.escape(s.path.name)}<br><small>{html.escape(str(s.path))}</small></th>" for s in summaries)
    body = "".join(
        f"<tr><th>{html.escape(label)}</th>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        for label, cells in table_rows(summaries))
    grids = "".join(
        "<td>" + (f'<img alt="last sample grid" src="data:image/png;base64,{base64.b64encode(s.grid.read_bytes()).decode()}">'
                  f"<br><small>{html.escape(s.grid.name)}</small>" if s.grid else "no sample grid") + "</td>"
        for s in summaries)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>medisynth runs compare</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;vertical-align:top;text-align:left}img{max-width:360px;image-rendering:pixelated}</style>"
        f"</head><body><h1>medisynth runs compare</h1><table><tr><th></th>{head}</tr>{body}"
        f"<tr><th>last sample grid</th>{grids}</tr></table></body></html>\n"
    )


def write_html(summaries: list[RunSummary], out: Path | str) -> Path:
    out = Path(out)
    if out.exists():
        raise MedisynthError(f"--html {out} already exists; choose another file name")
    atomic_write_text(out, html_page(summaries))
    return out
