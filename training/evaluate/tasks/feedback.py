"""``rtf-evaluate feedback``: what a few expert answers do to the catalogue's anomaly ranking.

Each source of ``--data`` is a catalogue of its own (e.g. three synthetic seeds). Its objects are encoded
with ``--checkpoint`` and ranked with :class:`encoder.rarity.Ranking`; then a simulated expert is shown
the top unanswered object ``--questions`` times (default 20) and answers "anomaly" iff it is of the
target, "not an anomaly" otherwise, and the ranking is rebuilt with every answer so far
(:meth:`Ranking.with_answers`). Targets: the *rare kinds* (every kind below ``--rare-share`` of that
catalogue, by its true labels) and each kind of ``--kinds`` alone (everything else: not anomalous).

Per catalogue and target, with k = ``--questions``: precision@k of the ranking before any answer; the
targets the k questions found (without feedback the same k looks find precision@k x k); precision@k of
the ranking after the k answers (the answered anomalies are pinned on top, so it holds the found ones);
precision@k of the next k unanswered objects after them (what the answers taught about the others), beside
precision at ranks k+1 .. 2k of the ranking without answers.

TAU and BETA are encoder.rarity's, chosen on synthetic seeds 2026, 7 and 8 (:data:`TUNING_SEEDS`): a
synthetic catalogue with one of those seeds is marked in the table, as no fair test of them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from encoder import rarity
from encoder.rarity import Ranking
from training.evaluate.context import FULL, Context, catalogue_ranking
from training.evaluate.report import num, pct, table, write_section

TUNING_SEEDS = (2026, 7, 8)
RARE = "rare kinds"


def simulate(ranking: Ranking, target: np.ndarray, questions: int) -> dict:
    """The expert loop on one ranking: ask about the top unanswered object, answer (+1 iff ``target``),
    re-rank; the precisions before / after and the targets found after each question."""
    target = np.asarray(target, dtype=bool)
    answers: dict[int, int] = {}
    current, found = ranking, []
    for _ in range(min(questions, len(ranking))):
        row = next(r for r in current.order().tolist() if r not in answers)
        answers[row] = 1 if target[row] else -1
        current = ranking.with_answers(answers)
        found.append(sum(y > 0 for y in answers.values()))
    before, after = ranking.order(), current.order()
    fresh = [r for r in after.tolist() if r not in answers][:questions]
    return {
        "n_targets": int(target.sum()),
        "share": float(target.mean()),
        "p_before": float(target[before[:questions]].mean()),
        "found": found[-1] if found else 0,
        "p_after": float(target[after[:questions]].mean()),
        "p_next": float(target[fresh].mean()) if fresh else float("nan"),
        "p_next_before": float(target[before[questions : 2 * questions]].mean())
        if len(target) > questions
        else float("nan"),
        "found_curve": found,
        "static_curve": np.cumsum(target[before[:questions]]).tolist(),
    }


def targets(labels: np.ndarray, kinds: list[str], rare_share: float) -> tuple[dict[str, np.ndarray], list[str]]:
    """Target masks by name ("rare kinds", then each of ``kinds`` the catalogue holds) and the rare kinds."""
    counts = Counter(labels.tolist())
    rare = sorted((k for k, c in counts.items() if c < rare_share * len(labels)), key=lambda k: counts[k])
    out = {RARE: np.isin(labels, rare)} if rare else {}
    out |= {k: labels == k for k in kinds if counts.get(k, 0) > 0}
    return out, rare


def catalogue_name(source: str) -> str:
    parts = source.split(":")
    tuned = source.startswith("synthetic:") and len(parts) > 3 and int(parts[3]) in TUNING_SEEDS
    return f"{source} (a TAU/BETA tuning seed!)" if tuned else source


def settings() -> dict[str, float]:
    """encoder.rarity's constants of the answers' pull, as this run used them."""
    return {name: getattr(rarity, name) for name in ("TAU", "BETA", "PRIOR", "PIN") if hasattr(rarity, name)}


def run(ctx: Context) -> str:
    opts, k = ctx.args.feedback, ctx.args.feedback.questions
    labels = ctx.labels("fine")
    sources = np.array(ctx.sources, dtype=object)
    res: dict[str, dict] = {}
    rows, rare_lines = [], []
    for j, (name, enc) in enumerate(ctx.encoders):
        e = ctx.encoded(j, FULL)
        for source in dict.fromkeys(ctx.sources):
            idx = np.flatnonzero(sources == source)
            cat = catalogue_name(source) if len(ctx.encoders) == 1 else f"{name}: {catalogue_name(source)}"
            ranking = catalogue_ranking(enc, e, ctx.lcs, idx)
            masks, rare = targets(labels[idx], opts.kinds, opts.rare_share)
            n_of = Counter(labels[idx].tolist())
            rare_lines.append(
                f"{cat}: {len(idx)} objects; rare kinds: {', '.join(f'{r} {n_of[r]}' for r in rare) or 'none'}"
            )
            res[cat] = {t: simulate(ranking, m, k) for t, m in masks.items()}
            for t, r in res[cat].items():
                rows.append([cat, t, f"{r['n_targets']} ({pct(r['share'])})", num(r["p_before"], 2), r["found"],
                             num(r["p_after"], 2), num(r["p_next_before"], 2), num(r["p_next"], 2)])  # fmt: skip
    names = list(dict.fromkeys(t for per in res.values() for t in per))
    means: dict[str, dict[str, float]] = {}
    for t in names:
        runs = [per[t] for per in res.values() if t in per]
        means[t] = {
            m: float(np.mean([r[m] for r in runs]))
            for m in ("share", "p_before", "found", "p_after", "p_next_before", "p_next")
        }
        means[t]["catalogues"] = len(runs)
    mean_rows = [
        [t, len([1 for per in res.values() if t in per]), pct(m["share"]), num(m["p_before"], 2), num(m["found"], 1),
         num(m["p_after"], 2), num(m["p_next_before"], 2), num(m["p_next"], 2)]
        for t, m in means.items()
    ]  # fmt: skip
    plot_found(res, names, k, ctx.out / "feedback_found.png")
    head = ["target", "targets (share)", f"p@{k} no feedback", f"found by {k} questions", f"p@{k} after {k} answers"]
    head += [f"p ranks {k + 1}-{2 * k} no feedback", f"p@{k} next {k} unanswered"]
    md = "\n\n".join(
        [
            "## Feedback: active anomaly re-ranking with a simulated expert",
            f"```\n{ctx.args.command}\n```",
            f"{ctx.description}; checkpoint{'s' if len(ctx.encoders) > 1 else ''} "
            + ", ".join(f"{n} `{enc.version}`" for n, enc in ctx.encoders)
            + f". Each source is a catalogue of its own, ranked by encoder.rarity.Ranking; {k} times the expert is "
            "shown the top unanswered object and answers anomaly iff it is of the target, and the ranking is rebuilt "
            f"with every answer so far (encoder.rarity {', '.join(f'{n} = {v:g}' for n, v in settings().items())}). "
            f"Rare kinds: kinds below {pct(opts.rare_share)} of that catalogue:",
            "\n".join(f"- {line}" for line in rare_lines),
            f"p@{k} no feedback: targets among the top {k} before any answer (the same {k} looks without feedback "
            f"find p@{k} x {k}); found: targets among the {k} objects the expert was shown; p@{k} after: the top "
            f"{k} after the {k} answers (answered anomalies are pinned on top); next {k} unanswered: the {k} "
            f"best-ranked objects nobody answered, after the answers, beside ranks {k + 1}-{2 * k} of the ranking "
            "without answers (the objects it would show next). Mean over the catalogues:",
            table(["target", "catalogues", "share", *head[2:]], mean_rows),
            "Per catalogue:",
            table(["catalogue", *head], rows),
            "![found](feedback_found.png)",
        ]
    )
    data = {"questions": k, "rare_share": opts.rare_share, "rarity": settings(), "results": res, "mean": means}
    return write_section(ctx, "feedback", md, data)


def plot_found(res: dict[str, dict], names: list[str], k: int, path: Path) -> None:
    """Targets found after each question, mean over the catalogues: with feedback vs the static top list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.6 * max(len(names), 1), 3.4), squeeze=False)
    for ax, t in zip(axes[0], names, strict=False):
        runs = [per[t] for per in res.values() if t in per and len(per[t]["found_curve"]) == k]
        if not runs:
            continue
        q = np.arange(1, k + 1)
        ax.plot(q, np.mean([r["found_curve"] for r in runs], 0), marker="o", ms=3, label="with feedback")
        ax.plot(q, np.mean([r["static_curve"] for r in runs], 0), marker="s", ms=3, label="no feedback")
        ax.plot(q, q * np.mean([r["share"] for r in runs]), ls="--", c="grey", label="chance")
        ax.set_title(t)
        ax.set_xlabel("questions")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("targets found (mean)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
