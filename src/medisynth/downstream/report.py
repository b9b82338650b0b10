"""The utility report: utility.json (everything), utility.md (tables), utility.png and a
self-contained utility.html (tables + the plot inlined as base64)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from medisynth.io import atomic_dir, atomic_write_text, write_json
from medisynth.downstream.metrics import SCALAR_METRICS
from medisynth.report.format import MISSING, format_number

LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "macro_f1": "macro-F1",
          "qwk": "QWK", "auroc_ovr": "AUROC (OvR)"}


def _mean_std(entry: dict) -> str:
    """A metric over seeds: ``mean ± std`` (scores in [0, 1], so three decimals)."""
    if entry["mean"] is None:
        return MISSING
    std = f" ± {format_number(entry['std'], kind='fraction')}" if entry["std"] is not None else ""
    return format_number(entry["mean"], kind="fraction") + std


def _above_chance(results: dict, protocol: str) -> str:
    c = results.get("verdict", {}).get("chance", {}).get(protocol)
    if not c:
        return MISSING
    return f"{c['seeds_above_chance']}/{c['seeds']} seeds" + ("" if c["above_chance"] else " (at chance)")


def metrics_table(results: dict) -> list[list[str]]:
    summary = results["summary"]
    metrics = [m for m in SCALAR_METRICS if any(summary[p][m]["mean"] is not None for p in summary)]
    rows = [["protocol", *[LABELS[m] for m in metrics], "above chance"]]
    for protocol, entry in summary.items():
        rows.append([protocol, *[_mean_std(entry[m]) for m in metrics], _above_chance(results, protocol)])
    return rows


def verdict_lines(results: dict) -> list[str]:
    """The verdict first: its answer and sentence, then what "above chance" means."""
    v = results.get("verdict")
    if not v:
        return []
    return [f"Verdict: {v['answer']}. {v['sentence'][0].upper()}{v['sentence'][1:]}.",
            "Above chance: seeds whose test balanced accuracy beats 1/K (the score of any classifier that ignores the "
            "image) in a one-sided permutation test (p < 0.05); a protocol at chance in most seeds learned nothing, and "
            "its figures mean nothing."]


def test_set(results: dict, short: bool = False) -> str:
    """Where the classifiers were scored, in the report's words: the real test split, or the external test set
    (``--test-data``) named with its path (``short``: without it)."""
    external = results["config"].get("test_data")
    if external is None:
        return "the real test split"
    return "the external test set" if short else f"every image of {external} (an external test set)"


def terminal_summary(results: dict, report_path) -> None:
    """A short rich table (balanced accuracy, accuracy, chance per protocol), the verdict and the report path."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"downstream utility on {test_set(results, short=True)} (mean ± std over seeds)")
    for column in ("protocol", "balanced acc.", "accuracy", "above chance"):
        # a protocol's name is what the user typed: never cut it ("above chance" wraps instead)
        table.add_column(column, justify="left" if column == "protocol" else "right", no_wrap=column == "protocol")
    for protocol, entry in results["summary"].items():
        table.add_row(protocol, _mean_std(entry["balanced_accuracy"]), _mean_std(entry["accuracy"]),
                      _above_chance(results, protocol))
    console = Console()
    console.print(table)
    for line in verdict_lines(results)[:1]:
        console.print(line, markup=False, highlight=False)
    console.print(f"report: {report_path}", markup=False, highlight=False)


def recall_table(results: dict) -> list[list[str]]:
    names = results["data"]["class_names"]
    rows = [["protocol", *[f"recall {c}" for c in names]]]
    for protocol, entry in results["summary"].items():
        rows.append([protocol, *[format_number(v, kind="fraction") for v in entry["per_class_recall_mean"]]])
    return rows


def comparison_table(results: dict) -> list[list[str]]:
    rows = [["comparison", "metric", "mean diff.", "paired t p", "Wilcoxon p", "seeds"]]
    for name, comparison in results["comparisons"].items():
        for metric in SCALAR_METRICS:
            c = comparison[metric]
            if c["mean_difference"] is None:
                continue
            rows.append([name, LABELS[metric], format_number(c["mean_difference"], kind="fraction", signed=True),
                         format_number(c["t_test_p"]), format_number(c["wilcoxon_p"]), str(c["n_pairs"])])
    return rows


def extra_lines(results: dict) -> list[str]:
    lines = []
    for name, comparison in results["comparisons"].items():
        m = comparison["seed0_mcnemar"]
        lines.append(f"{name}, seed 0, McNemar exact test on per-image correctness: only real right "
                     f"{m['only_a_correct']}, only {name.split(' vs ')[0]} right {m['only_b_correct']}, p = {format_number(m['p'])}")
        b = comparison.get("seed0_bootstrap_balanced_accuracy")
        if b:
            lines.append(f"{name}, seed 0, balanced-accuracy difference {format_number(b['difference'], kind='fraction', signed=True)}, "
                         f"{int(b['level'] * 100)}% paired bootstrap CI over test images "
                         f"[{format_number(b['ci_low'], kind='fraction', signed=True)}, "
                         f"{format_number(b['ci_high'], kind='fraction', signed=True)}] ({b['n_boot']} resamples)")
    return lines


def _markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plot_png(results: dict) -> bytes:
    """The ``plot_figure`` as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = plot_figure(results)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot_figure(results: dict):
    """Grouped bars: one group per metric, one bar per protocol, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    summary = results["summary"]
    protocols = list(summary)
    metrics = [m for m in SCALAR_METRICS if any(summary[p][m]["mean"] is not None for p in protocols)]
    # constrained layout with the legend "outside" below the axes: the figure grows to hold it,
    # so long protocol names are never cut off (a legend right of the axes was)
    fig, ax = plt.subplots(figsize=(3.2 + 1.5 * len(metrics), 4.2), dpi=120, layout="constrained")
    width = 0.8 / max(1, len(protocols))
    x = np.arange(len(metrics))
    for i, protocol in enumerate(protocols):
        means = [summary[protocol][m]["mean"] or 0.0 for m in metrics]
        stds = [summary[protocol][m]["std"] or 0.0 for m in metrics]
        ax.bar(x + (i - (len(protocols) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=protocol)
    ax.set_xticks(x, [LABELS[m] for m in metrics])
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
    ax.set_ylabel(f"mean ± std over {results['config']['seeds']} seed(s)")
    ax.set_title(f"classifier on {test_set(results, short=True)}")
    fig.legend(fontsize=8, loc="outside lower center", ncols=min(len(protocols), 3))
    ax.grid(axis="y", alpha=0.3)
    return fig


def markdown_report(results: dict) -> str:
    data = results["data"]
    parts = [
        "# Downstream utility",
        "",
        *[line + "\n" for line in verdict_lines(results)],
        f"Classifier `{results['config']['model']}` trained per protocol and seed, early-stopped on the real "
        f"validation split, scored on {test_set(results)} (no synthetic image is ever used for validation or "
        "test).",
        "",
        f"Classes: {', '.join(data['class_names'])}. Real train/val/test per class: "
        f"{data['real']['train']} / {data['real']['val']} / {data['real']['test']}."
        + (f" Synthetic per class: {data['synthetic']}." if data["synthetic"] is not None else ""),
        "",
        "## Metrics (mean ± std over seeds)",
        "",
        _markdown(metrics_table(results)),
        "",
        "## Per-class recall (mean over seeds)",
        "",
        _markdown(recall_table(results)),
    ]
    if results["comparisons"]:
        parts += ["", "## Paired comparisons against real-only (paired over seeds)", "",
                  _markdown(comparison_table(results)), ""]
        parts += [f"- {line}" for line in extra_lines(results)]
    if results["notes"]:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(parts) + "\n"


def html_report(results: dict, png: bytes) -> str:
    img = base64.b64encode(png).decode("ascii")
    sections = [
        "<h1>Downstream utility</h1>",
        *[f'<p class="verdict"><strong>{html.escape(line)}</strong></p>' if i == 0 else f"<p>{html.escape(line)}</p>"
          for i, line in enumerate(verdict_lines(results))],
        f"<p>Classifier <code>{html.escape(results['config']['model'])}</code>, early-stopped on the real "
        f"validation split, scored on {html.escape(test_set(results))}; synthetic images are used for training "
        "only.</p>",
        f'<img alt="metrics per protocol" src="data:image/png;base64,{img}">',
        "<h2>Metrics (mean ± std over seeds)</h2>", _html_table(metrics_table(results)),
        "<h2>Per-class recall (mean over seeds)</h2>", _html_table(recall_table(results)),
    ]
    if results["comparisons"]:
        sections += ["<h2>Paired comparisons against real-only</h2>", _html_table(comparison_table(results)),
                     "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in extra_lines(results)) + "</ul>"]
    if results["notes"]:
        sections += ["<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in results["notes"]) + "</ul>"]
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}.verdict{font-size:1.15em;border-left:4px solid #444;padding-left:.6em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>medisynth utility</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")


def write_report(results: dict, out: Path, overwrite: bool = False, inputs=()) -> None:
    png = plot_png(results)
    with atomic_dir(out, overwrite=overwrite, kind="utility", inputs=inputs) as tmp:
        write_json(tmp / "utility.json", results)
        atomic_write_text(tmp / "utility.md", markdown_report(results))
        atomic_write_text(tmp / "utility.html", html_report(results, png))
        (tmp / "utility.png").write_bytes(png)
