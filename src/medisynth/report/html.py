"""One self-contained HTML page from metrics.json's dictionary and the figures (PNG bytes).

No scripts, fonts or styles are fetched: CSS is inline and every image is a base64 data URI,
so the file opens offline and can be mailed around. Sections have stable ids
(verdict, overview, distribution, per-class, pixel, memorization, plots, training) for tests and links;
the verdict comes first, so it is on the first screen. Every number goes through
``medisynth.report.format.format_number``.
"""
from __future__ import annotations

import base64
import html
from typing import Any

from medisynth.metrics.detectability import DETECTABILITY_KEY
from medisynth.report.format import format_chance, format_interval, format_number

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.note{color:#555;font-size:.9em}.warn{color:#a05a00}.bad{color:#b00020}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figcaption{font-size:.85em;color:#444;max-width:520px}
img{max-width:100%;image-rendering:pixelated}code{background:#f5f5f5;padding:0 .2em}
h1{margin:.2em 0}.sub{color:#555;font-size:.85em;margin:.2em 0 .8em;overflow-wrap:anywhere}
#verdict h2{margin-top:.4em}.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:.8em}
.card{border:1px solid #ccc;border-top:6px solid #888;border-radius:4px;padding:.5em .7em;font-size:.88em}
.card h3{margin:0;font-size:1em;color:#333}.card .level{font-size:1.5em;font-weight:700;text-transform:uppercase;margin:.15em 0}
.card .num{font-size:1.1em;font-weight:600}.card p{margin:.3em 0}
.good{border-top-color:#1b7f3b}.good .level{color:#1b7f3b}.doubtful{border-top-color:#c77700}.doubtful .level{color:#a86400}
.poor{border-top-color:#b00020}.poor .level{color:#b00020}.cannot-tell{border-top-color:#777}.cannot-tell .level{color:#555}
tr.uninformative td{color:#999}
"""

EXPLAIN = {
    "fid": "Frechet distance of Gaussians fitted to the features (lower is better; 0 = same mean and covariance)",
    "kid_mean": "Kernel distance (unbiased MMD^2, cubic polynomial kernel; lower is better, ~0 = indistinguishable)",
    "precision": "fraction of synthetic samples inside the real manifold (fidelity)",
    "recall": "fraction of real samples inside the synthetic manifold (diversity / mode coverage)",
    "density": "how many real neighbourhoods contain a synthetic sample, / k (about 1 for matching sets)",
    "coverage": "fraction of real samples with a synthetic sample in their neighbourhood",
    "is_mean": "Inception Score from the space's classifier logits (higher = confident and varied predictions)",
}


FRACTIONS = {"precision", "recall", "coverage", "overall", "accuracy", "fraction_flagged", "heldout_fraction_flagged"}


class Html(str):
    """Text that is already HTML (escaped and formatted): ``table`` puts it in as it is."""


def fmt(value: Any, kind: str = "number") -> Html:
    """A number for the page (``format_number``); other values HTML-escaped."""
    if value is None or isinstance(value, (bool, int, float)):
        return Html(html.escape(format_number(value, kind=kind)))
    return Html(html.escape(str(value)))


def table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, Html) else fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(png: bytes | None, caption: str, alt: str) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


DIST_KEYS = ["fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "is_mean", "is_std"]


def _overview(m: dict) -> str:
    inp = m["inputs"]
    rows = [
        ["real data", inp["real"]], ["reference split", inp["real_split"]], ["real images (reference)", inp["n_real"]],
        ["training images", inp["n_train"]], ["held-out real images (val+test)", inp["n_heldout"]],
        ["synthetic source", f"{inp['fake']} ({inp['fake_kind']})"], ["synthetic images", inp["n_fake"]],
        ["image size / channels", f"{inp['image_size']} px / {inp['channels']}"],
    ]
    spaces = "".join(
        f"<li><b>{html.escape(name)}</b>: "
        + (html.escape(s.get("description", "")) if s["status"] == "ok" else f'<span class="warn">{html.escape(s["reason"])}</span>')
        + "</li>"
        for name, s in m["feature_spaces"].items()
    )
    spaces_prefixes = tuple(f"{name}: " for name in m["distribution"])  # those are listed under Distribution metrics
    warns = "".join(f'<li class="warn">{html.escape(w)}</li>' for w in m.get("warnings", []) if not w.startswith(spaces_prefixes))
    return (
        '<section id="overview"><h2>Overview</h2>' + table(rows, ["", "value"])
        + f"<p>Feature spaces:</p><ul>{spaces}</ul>" + (f"<p>Warnings:</p><ul>{warns}</ul>" if warns else "") + "</section>"
    )


def _distribution(m: dict) -> str:
    rows = []
    for name, d in m["distribution"].items():
        rows.append([name] + [fmt(d.get(k), "fraction" if k in FRACTIONS else "number") for k in DIST_KEYS])
    notes = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(w)}</li>" for name, d in m["distribution"].items() for w in d.get("warnings", [])
    )
    explain = "".join(f"<li><code>{k}</code>: {html.escape(v)}</li>" for k, v in EXPLAIN.items())
    return (
        '<section id="distribution"><h2>Distribution metrics</h2>' + _yardstick_tables(m)
        + "<p>All images, every space:</p>"
        + (table(rows, ["space"] + DIST_KEYS) if rows else "<p>No feature space could run.</p>")
        + (f'<ul class="warn">{notes}</ul>' if notes else "")
        + f'<ul class="note">{explain}</ul><p class="note">FID is biased by sample size: compare values only at equal sizes. '
        "Numbers from different feature spaces are not comparable with each other.</p></section>"
    )


def _detectability(m: dict) -> str:
    """Per space: how often a classifier tells synthetic (and held-out real) images from the reference ones."""
    rows = []
    for name, d in (m.get("detectability") or {}).items():
        cells = [name]
        for which in ("synthetic", "heldout"):
            r = d.get(which) or {}
            cells.append(Html(f"{fmt(r[DETECTABILITY_KEY], 'fraction')} (p = {fmt(r['chance']['p_value'])}, {r['n_per_set']} a set)")
                         if r.get("available") else r.get("reason", "-"))
        rows.append(cells)
    if not rows:
        return ""
    return (
        '<section id="detectability"><h2>Real or synthetic?</h2>'
        + table(rows, ["space", "synthetic vs reference", "held-out real vs training (yardstick)"])
        + '<p class="note">Cross-validated accuracy of a logistic regression told to say which set each image came from, on '
        "equal numbers of each (0.5 = the sets cannot be told apart). Synthetic images that are this easy to spot let a "
        "downstream classifier learn &quot;looks synthetic&quot; as a stand-in for the classes they were added to. A "
        "held-out figure well above 0.5 means the held-out real images themselves differ from the training ones.</p></section>"
    )


def _yardstick_tables(m: dict) -> str:
    """Per space: each metric for synthetic vs real beside the same metric for real vs real at the same size."""
    parts = []
    for name, d in m["distribution"].items():
        y = d.get("yardstick") or {}
        space = m["feature_spaces"].get(name, {})
        uninformative = space.get("informative") is False
        head = f"<h3>{html.escape(name)} space" + (" (used by the verdict)" if name == (m.get("verdict") or {}).get("primary_space") else "") + "</h3>"
        if uninformative:
            ch = space.get("chance") or {}
            head += (f'<p class="bad">Uninformative: the domain classifier is no better than chance on {ch.get("n")} held-out '
                     f"{html.escape(str(ch.get('split')))} images ({html.escape(format_chance(ch))}, p = {fmt(ch.get('p_value'))}). "
                     "Its features do not encode the images' content; do not read these figures as good or bad.</p>")
        if not y.get("available"):
            parts.append(head + f'<p class="warn">No real-vs-real yardstick: {html.escape(y.get("reason", "not computed"))}</p>')
            continue
        n = y["n_per_set"]
        rows = []
        for k in y["synthetic"]:
            kind = "fraction" if k in FRACTIONS else "number"
            rows.append([k, fmt(d.get(k), kind), fmt(y["synthetic"][k], kind), fmt(y["real_vs_real"][k], kind),
                         fmt(y["ratio"][k], "ratio"), y["better"][k]])
        header = ["metric", f"synthetic, all ({d.get('n_real')} real / {d.get('n_fake')} synthetic)", f"synthetic, {n} vs {n}",
                  f"real vs real, {n} vs {n} (yardstick)", "ratio", "better"]
        body = table(rows, header)
        if uninformative:
            body = body.replace("<tr><td>", '<tr class="uninformative"><td>')
        parts.append(head + body + f'<p class="note">Yardstick: {html.escape(y["description"])}; averaged over {y["repeats"]} '
                     "random draws. A ratio near 1 means as close to the real images as other real images are.</p>")
    return "".join(parts)


def _verdict(m: dict) -> str:
    v = m.get("verdict")
    if not v:
        return ""
    cards = []
    for a in v["answers"]:
        level = a["level"]
        if level == "cannot tell":
            body = f"<p>{html.escape(a['reason'] or '')}</p>"
        else:
            body = (f'<p class="num">{fmt(a["number"], a["number_kind"])}</p><p>{html.escape(a["number_label"])}</p>'
                    f'<p class="note">yardstick: {html.escape(a["yardstick_label"])}</p><p>{html.escape(a["sentence"])}</p>')
        cards.append(f'<div class="card {level.replace(" ", "-")}" data-question="{html.escape(a["question"])}">'
                     f'<h3>{html.escape(a["title"])}</h3><div class="level">{html.escape(level)}</div>{body}</div>')
    space = v.get("primary_space")
    why = (f'<p class="note">Feature space of the verdict: <b>{html.escape(space)}</b> ({html.escape(v["primary_space_reason"])}). '
           'Thresholds: docs/metrics_schema.md, "verdict".</p>') if space else ""
    return f'<section id="verdict"><h2>Verdict</h2><div class="cards">{"".join(cards)}</div>{why}</section>'


def _per_class(m: dict) -> str:
    pc = m.get("per_class")
    if not pc:
        return '<section id="per-class"><h2>Per class</h2><p>The synthetic images carry no labels (no labels.csv): no per-class figures.</p></section>'
    cas = m.get("cas", {})
    space = (m.get("verdict") or {}).get("primary_space")
    header = ["class", "n real", "n synthetic", "CAS", "real held-out acc.", f"KID [95% CI] ({space})", f"coverage [95% CI] ({space})",
              f"FID ({space})", f"precision ({space})", f"recall ({space})"]
    rows = []
    for name, c in pc.items():
        iv = c.get("interval") or {}
        d = (c.get("distribution") or {}).get(space) or {}
        if iv.get("kid") is not None:
            kid = f"{fmt(iv['kid'])} {format_interval(*iv['kid_ci'])}"
            cov = f"{fmt(iv['coverage'], 'fraction')} {format_interval(*iv['coverage_ci'], kind='fraction')} (k={iv['k']})"
        else:
            kid = cov = iv.get("reason", "\u2013")
        rows.append([name, fmt(c["n_real"]), fmt(c["n_fake"]), fmt((cas.get("per_class") or {}).get(name), "fraction"),
                     fmt((cas.get("real_heldout_per_class") or {}).get(name), "fraction"), kid, cov,
                     fmt(d.get("fid")), fmt(d.get("precision"), "fraction"), fmt(d.get("recall"), "fraction")])
    skipped = "".join(f"<li>{html.escape(n)}: {html.escape(c['skipped_reason'])}</li>" for n, c in pc.items() if c.get("skipped_reason"))
    ch, dc = cas.get("chance") or {}, cas.get("domain_chance") or {}
    cas_text = (
        f"<p>Classification accuracy score (CAS): a classifier trained on the real training split labels "
        f"{fmt(cas.get('overall'), 'fraction')} of the synthetic images as the class they were sampled for "
        f"(chance: {fmt(ch.get('chance'), 'fraction')}, p = {fmt(ch.get('p_value'))}); "
        f"the same classifier gets {fmt(cas.get('real_heldout_accuracy'), 'fraction')} on held-out real images: the ceiling to read CAS against.</p>"
        if cas.get("available") else f'<p class="warn">CAS not computed: {html.escape(str(cas.get("reason", "")))}</p>'
    )
    if cas.get("available") and not ch.get("better_than_chance"):
        cas_text += '<p class="bad">CAS is no better than chance: the classifier does not see the intended classes in the synthetic images.</p>'
    if dc and not dc.get("better_than_chance"):
        cas_text += (f'<p class="bad">The domain classifier is no better than chance on {dc["n"]} held-out {html.escape(str(dc.get("split")))} '
                     f"images ({html.escape(format_chance(dc))}, p = {fmt(dc.get('p_value'))}): "
                     "CAS and the domain space are uninformative here.</p>")
    return (
        '<section id="per-class"><h2>Per class</h2>' + cas_text + table(rows, header)
        + (f'<p class="note">Distribution metrics skipped for:</p><ul class="note">{skipped}</ul>' if skipped else "") + "</section>"
    )


def _pixel(m: dict, figs: dict) -> str:
    p, d = m["pixel"], m["diversity"]
    rows = [
        ["SSIM to nearest training image (mean ± std)", f"{fmt(p['ssim_nearest_mean'])} ± {fmt(p['ssim_nearest_std'])}"],
        ["PSNR to nearest training image, dB (mean ± std)", f"{fmt(p['psnr_nearest_mean'])} ± {fmt(p['psnr_nearest_std'])}"],
        ["MSE of mean real vs mean synthetic image", fmt(p["mean_image_mse"])],
        ["intensity histogram Wasserstein distance", fmt(p["histogram"]["wasserstein"])],
        ["intensity histogram Jensen-Shannon distance", fmt(p["histogram"]["jensen_shannon"])],
        ["mean pairwise MS-SSIM, synthetic (lower = more diverse)", fmt(d["fake"]["mean"])],
        ["mean pairwise MS-SSIM, real", fmt(d["real"]["mean"])],
    ]
    y = p.get("yardstick") or {}
    yard = ""
    if y.get("available"):
        n = y["n_per_set"]
        names = {"mean_image_mse": "MSE of mean images", "wasserstein": "histogram Wasserstein", "jensen_shannon": "histogram Jensen-Shannon"}
        yard = table([[names[k], fmt(y["synthetic"][k]), fmt(y["real_vs_real"][k]), fmt(y["ratio"][k], "ratio")] for k in names],
                     ["figure (lower is better)", f"synthetic, {n} vs {n}", f"real vs real, {n} vs {n} (yardstick)", "ratio"])
        yard += f'<p class="note">Yardstick: {html.escape(y["description"])}; averaged over {y["repeats"]} random draws.</p>'
    return (
        '<section id="pixel"><h2>Pixel-level figures and diversity</h2>' + table(rows, ["figure", "value"]) + yard
        + f'<p class="note">MS-SSIM used {d["fake"].get("scales")} scale(s) at this image size (5 need >= 161 px); '
        "very high synthetic MS-SSIM next to a lower real one suggests mode collapse.</p>"
        + figure(figs.get("mean_images"), "Mean real and synthetic images and their difference", "mean images")
        + figure(figs.get("histograms"), "Intensity histograms", "histograms") + "</section>"
    )


def _memorization(m: dict, figs: dict) -> str:
    mem = m["memorization"]
    px = mem["pixel"]
    rows = [
        ["copy threshold (correlation after alignment)", f"{fmt(px['threshold'])} ({px.get('threshold_source', 'given')})"],
        ["synthetic images flagged as copies", f"{px['num_flagged']} ({fmt(px['fraction_flagged'], 'fraction')})"
         + (f" of {px['num_units_flagged']} training unit(s)" if px.get("num_units_flagged") else "")],
        ["held-out REAL images that would be flagged (baseline)", fmt(px["heldout_fraction_flagged"], 'fraction')],
        ["held-out real images that are exact copies of training images", fmt(px["heldout_num_exact_copies"])],
        ["pixel DCR ratio: median synthetic / median held-out distance to training", fmt(px["dcr_ratio"])],
        ["synthetic images closer to training than 95% of held-out images", fmt(px["fraction_closer_than_heldout_p05"], 'fraction')],
    ]
    feat = mem.get("feature")
    if feat:
        rows += [
            [f"feature DCR ratio ({feat['space']} space)", fmt(feat["dcr_ratio"])],
            [f"synthetic closer than 95% of held-out ({feat['space']} space)", fmt(feat["fraction_closer_than_heldout_p05"], 'fraction')],
        ]
    return (
        '<section id="memorization"><h2>Memorization and privacy</h2>' + table(rows, ["figure", "value"])
        + '<p class="note">DCR = distance to the closest training record. A DCR ratio near 1 means synthetic images are as far '
        "from the training set as unseen real images are; well below 1 means the model reproduces training images. "
        "Read the flagged fraction against the held-out baseline: data sets with duplicate or neighbouring slices flag real images too. "
        "Every synthetic image, its nearest training image, the similarity and the alignment found are in near_copies.csv.</p>"
        + figure(figs.get("similarity_hist"), "Highest similarity to any training image", "similarity histogram")
        + figure(figs.get("flagged_pairs"), "Flagged near-copies: synthetic | nearest training image", "flagged pairs")
        + "</section>"
    )


def _plots(figs: dict) -> str:
    parts = [
        figure(figs.get("grid_real"), "Real images (reference split)", "real grid"),
        figure(figs.get("grid_fake"), "Synthetic images", "synthetic grid"),
        figure(figs.get("nn_pairs"), "Synthetic images and their nearest training images (pixel space)", "nearest neighbours"),
        figure(figs.get("edges"), "Sobel edge maps: real (top), synthetic (bottom)", "edge maps"),
    ]
    parts += [figure(png, f"{key.split(':', 1)[1]}: {'PCA projection' if key.startswith('pca:') else 'KDE along principal components'}", key)
              for key, png in figs.items() if key.startswith(("pca:", "kde:"))]
    return '<section id="plots"><h2>Plots</h2>' + "".join(parts) + "</section>"


def _training(m: dict, figs: dict) -> str:
    t = m.get("training")
    if not t:
        return '<section id="training"><h2>Training</h2><p>The synthetic images were given as a folder, not a run: no training curves.</p></section>'
    rows = [[k, v] for k, v in (t.get("final") or {}).items()]
    return (
        '<section id="training"><h2>Training</h2>' + f"<p>Run: <code>{html.escape(str(t['run']))}</code></p>"
        + (table(rows, ["last logged", "value"]) if rows else "") + figure(figs.get("loss_curves"), "Logged training curves", "loss curves")
        + "</section>"
    )


def render_report(metrics: dict, figures: dict[str, bytes]) -> str:
    title = "medisynth evaluation"
    body = (
        _verdict(metrics) + _overview(metrics) + _distribution(metrics) + _detectability(metrics) + _per_class(metrics) + _pixel(metrics, figures)
        + _memorization(metrics, figures) + _plots(figures) + _training(metrics, figures)
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><h1>{title}</h1>"
        f'<p class="sub">{html.escape(str(metrics["inputs"]["fake"]))} against {html.escape(str(metrics["inputs"]["real"]))}; '
        f'schema {html.escape(metrics["schema"])}, created {html.escape(metrics["created"])}; '
        f"all numbers are in metrics.json next to this file.</p>{body}</body></html>\n"
    )
