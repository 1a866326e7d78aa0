"""The Mini-R1V report card: ``REPORT.md`` (tables written from ``report.json``), ``report.json`` and
``report.png`` (held-out accuracy over the stages; effective-sample share over GRPO steps with and
without SSB).

    from training.mini.report import write
    write(json.loads(Path("data/mini/report.json").read_text()), Path("assets/mini"))

The measured numbers come from the driver (``python -m training.mini``); this module only lays
them out. Hand-written analysis lives in the "Notes" section the driver keeps from an existing
``REPORT.md`` (everything after the ``<!-- notes -->`` marker survives a rewrite).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

NOTES_MARK = "<!-- notes -->"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    acc = report.get("accuracy", {})
    names = list(acc)
    for split, marker in (("val", "o"), ("test", "s")):
        ax1.plot(range(len(names)), [100 * acc[n].get(split, float("nan")) for n in names], marker=marker, label=split)
    ax1.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax1.set_ylabel("accuracy, one sample (%)")
    ax1.set_title("Held-out accuracy after each stage")
    ax1.legend()
    for name, curve in report.get("grpo_curves", {}).items():
        ax2.plot(range(1, len(curve["effective_share"]) + 1), [100 * x for x in curve["effective_share"]],
                 label=f"{name}: trained on")
        ax2.plot(range(1, len(curve["effective_share_fresh"]) + 1),
                 [100 * x for x in curve["effective_share_fresh"]], linestyle=":", label=f"{name}: fresh only")
    ax2.set_xlabel("GRPO step")
    ax2.set_ylabel("effective samples (%)")
    ax2.set_title("Effective-sample share")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _total_s(report: dict) -> float:
    if "total_wall_s" in report:
        return report["total_wall_s"]
    return sum(s["wall_s"] for s in report.get("stages", {}).values())


def targets(report: dict) -> list[str]:
    """The issue's targets against what was measured (``met`` computed here, never typed in)."""
    acc, rr = report.get("accuracy", {}), report.get("rerank", {}).get("n=8", {})
    single = report.get("rerank", {}).get("single_sample_mean")
    curves = report.get("grpo_curves", {})
    cont = report.get("stage0_continued")
    if cont:  # the parts were continued from an earlier run: count that run's data and stage-0 time too
        rows = [("whole recipe on this 2-core CPU (with the earlier parts' time)", "< 60 min",
                 (_total_s(report) + cont["prior_wall_s"]) / 60, lambda v: v < 60, "{:.1f} min")]
    else:
        rows = [("whole recipe on this 2-core CPU", "< 60 min", _total_s(report) / 60, lambda v: v < 60, "{:.1f} min")]
    if single is not None:
        rows.append(("held-out accuracy, single sample (mean over the 8 samples)", ">= 70%", 100 * single,
                     lambda v: v >= 70, "{:.1f}%"))
    if single is not None and "reward+vote" in rr:
        rows.append(("reward+vote at n=8 minus single sample", ">= +5 pts", 100 * (rr["reward+vote"] - single),
                     lambda v: v >= 5, "{:+.1f} pts"))
    if "grpo-ssb" in acc and "mpo" in acc:
        rows.append(("GRPO+SSB minus MPO (held-out test, one sample)", ">= +3 pts",
                     100 * (acc["grpo-ssb"]["test"] - acc["mpo"]["test"]), lambda v: v >= 3, "{:+.1f} pts"))
    if "grpo-ssb" in curves and "grpo-nossb" in curves:
        a, b = _mean(curves["grpo-ssb"]["effective_share"]), _mean(curves["grpo-nossb"]["effective_share"])
        rows.append(("effective-sample share, SSB / no SSB", ">= 1.5x", a / b if b else float("inf") if a else 0.0,
                     lambda v: v >= 1.5, "{:.2f}x"))
    out = ["## Targets", "", "| target | wanted | measured | met |", "|---|---|---|---|"]
    for name, want, value, ok, fmt in rows:
        out.append(f"| {name} | {want} | {fmt.format(value)} | {'yes' if ok(value) else '**no**'} |")
    return out


def markdown(report: dict) -> str:
    acc = report.get("accuracy", {})
    lines = ["# Mini-R1V report card", "",
             "The R1V2 recipe in miniature, end to end on a 2-core CPU: generated problems, stage-0 parts, "
             "assembly, adapter training, MPO, a Bradley-Terry reward model, GRPO with and without SSB. "
             "Every number below is measured by `python -m training.mini` and copied from `report.json`.", "",
             f"Seed: {report.get('seed')}. Wall time of the whole recipe: {_total_s(report) / 60:.1f} min "
             "(runs that do not depend on each other ran at the same time, one thread each: the two stage-0 "
             "parts, the two SFT runs, MPO with the reward model, GRPO with and without SSB).", "",
             *targets(report), "",
             "## Held-out accuracy after each stage (one sample, T=0.6, top-p 0.95)", "",
             "*test: reads exactly* is the share of test answers whose restated problem (the first line of the "
             "reasoning) equals the photo's statement; *similarity* is its mean character similarity.", "",
             "| stage | val | test | test: reads exactly | test: similarity |", "|---|---|---|---|---|"]
    reading = report.get("reading", {})
    for name, r in acc.items():
        rd = reading.get(name, {})
        read = (f"{100 * rd['exact_read']:.1f}% | {rd['similarity']:.2f}" if rd else "- | -")
        lines.append(f"| {name} | {100 * r.get('val', 0):.1f}% | {100 * r.get('test', 0):.1f}% | {read} |")
    s0 = report.get("stages", {}).get("stage0", {})
    if s0:
        lines += ["", "Stage 0 alone: the LM solves "
                  f"{100 * s0['lm']['text_only_greedy_accuracy']:.0f}% of fresh problems given as text (greedy"
                  + (f"; it restates {100 * s0['lm']['restatement_copied']:.0f}% of them exactly"
                     if "restatement_copied" in s0["lm"] else "") + "); "
                  f"the vision tower reads {100 * s0['vision']['val_char_accuracy']:.0f}% of val characters "
                  f"({100 * s0['vision']['val_exact_read']:.0f}% of statements exactly)."]
    cont = report.get("stage0_continued")
    if cont:
        lines += ["", "Stage 0 here *continues* the parts of an earlier run (`--parts-from`): "
                  + "; ".join(f"{part} from `{c['from']}` ({c['steps']} steps, {c['wall_s'] / 60:.0f} min)"
                              for part, c in cont.items() if isinstance(c, dict))
                  + f". Their totals: LM {s0.get('lm', {}).get('total_steps', '?')} steps, vision "
                  f"{s0.get('vision', {}).get('total_steps', '?')} steps."]
    sft = report.get("sft_choice")
    if sft:
        lines += ["", f"Adapter-only vs adapter+LM (same start, steps and data): val {sft['val']}; "
                  f"continued with **{sft['chosen']}** (chosen on val)."]
    grpo = report.get("grpo_curves", {})
    if grpo:
        lines += ["", "## Effective-sample share in GRPO", "", "| run | fresh (mean) | trained on (mean) | last 5 steps |",
                  "|---|---|---|---|"]
        for name, c in grpo.items():
            lines.append(f"| {name} | {100 * _mean(c['effective_share_fresh']):.1f}% | "
                         f"{100 * _mean(c['effective_share']):.1f}% | {100 * _mean(c['effective_share'][-5:]):.1f}% |")
    rr = report.get("rerank")
    if rr:
        lines += ["", "## Choosing among n samples (held-out test, final policy + reward model)", "",
                  "| n | first (single sample) | majority vote | reward argmax | reward+vote | any correct |",
                  "|---|---|---|---|---|---|"]
        for key in ("n=4", "n=8"):
            r = rr.get(key, {})
            lines.append(f"| {key[2:]} | " + " | ".join(f"{100 * r.get(k, float('nan')):.1f}%" for k in (
                "first", "vote", "reward", "reward+vote", "oracle_any_correct")) + " |")
        lines.append(f"\nMean accuracy over all n=8 samples: {100 * rr.get('single_sample_mean', 0):.1f}%.")
        rd = rr.get("reading")
        if rd:
            def pct(v):
                return "-" if v is None else f"{100 * v:.1f}%"
            lines.append(f"Reading: {100 * rd['exact_read']:.1f}% of these samples restate the problem exactly "
                         f"(mean similarity {rd['similarity']:.2f}); accuracy {pct(rd['accuracy_when_read_exactly'])} "
                         f"when they do, {pct(rd['accuracy_otherwise'])} when they do not.")
    lines += ["", "## Wall time per stage", "", "| stage | seconds | details |", "|---|---|---|"]
    for name, st in report.get("stages", {}).items():
        details = {k: v for k, v in st.items() if k not in ("wall_s", "lm", "vision", "curve")}
        lines.append(f"| {name} | {st['wall_s']:.0f} | {json.dumps(details, ensure_ascii=False)[:160]} |")
    runs = report.get("invocations") or ["python -m training.mini        # everything from scratch, then ships "
                                         "to assets/mini"]
    lines += ["", "## Reproduce", "", "```", *runs, "```", "", "Commands the driver ran:", "", "```",
              *report.get("commands", []), "```", "", "![accuracy and effective-sample share](report.png)", ""]
    return "\n".join(lines)


def write(report: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = ""
    old = out_dir / "REPORT.md"
    if old.exists() and NOTES_MARK in old.read_text(encoding="utf-8"):
        notes = old.read_text(encoding="utf-8").split(NOTES_MARK, 1)[1]
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    plot(report, out_dir / "report.png")
    old.write_text(markdown(report) + "\n" + NOTES_MARK + notes, encoding="utf-8")
    log.info("report written to %s", out_dir)
