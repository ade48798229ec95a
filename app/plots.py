"""PNG plots: a light curve, the curve its fingerprint decodes to, and its nearest neighbours."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from encoder.lightcurve import BANDS, LightCurve  # noqa: E402

BAND_COLOURS = {"u": "#7b2cbf", "g": "#2a9d8f", "r": "#e63946", "i": "#f4a261", "z": "#6d597a", "y": "#343a40"}


#: Points drawn per band at most (evenly thinned beyond): a 20,000-point panel took ~1 s to draw,
#: in Agg calls that hold the GIL, and shows no more than 2,000 do at this size.
MAX_DRAWN_POINTS = 2000


def _thin(mask: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(mask)
    if len(idx) > MAX_DRAWN_POINTS:
        idx = idx[np.linspace(0, len(idx) - 1, MAX_DRAWN_POINTS).astype(int)]
    return idx


def _draw_lightcurve(ax, lc: LightCurve, t0: float, *, small: bool = False) -> None:
    mag, err = lc.mag, lc.mag_err
    limits_labelled = small
    for b in np.unique(lc.band):
        name = BANDS[b]
        sel = _thin((lc.band == b) & np.isfinite(mag))
        ax.errorbar(
            lc.time[sel] - t0,
            mag[sel],
            yerr=err[sel],
            fmt="o",
            ms=3 if small else 4,
            lw=0.8,
            color=BAND_COLOURS[name],
            label=None if small else f"{name} detections",
        )
    for b in np.unique(lc.ul_band):
        ul = _thin(lc.ul_band == b)
        if len(ul):
            ax.scatter(
                lc.ul_time[ul] - t0,
                lc.ul_mag[ul],
                marker="v",
                s=10 if small else 14,
                color=BAND_COLOURS[BANDS[b]],
                alpha=0.4,
                label=None if limits_labelled else "upper limits (5σ, ▼)",
            )
            limits_labelled = True


def _span(lc: LightCurve) -> tuple[float, float]:
    """(first, last) day of a light curve's points, detections and limits, since its first detection."""
    t0 = lc.time[0]
    times = np.concatenate([lc.time, lc.ul_time]) - t0
    return float(times.min()), float(times.max())


def plot_figure(
    lc: LightCurve,
    reconstruction: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None,
    neighbours: list[tuple[LightCurve, float, str | None]],
    title: str,
):
    """The figure: the light curve with its decoded curve (from the first detection on), and up to
    three neighbours, each panel with labelled axes, the neighbour's class, and one shared time range."""
    n_nb = min(len(neighbours), 3)
    fig = plt.figure(figsize=(11, 4.6), dpi=100)
    grid = fig.add_gridspec(max(n_nb, 1), 2, width_ratios=[2.2, 1], hspace=0.75, wspace=0.22)
    ax = fig.add_subplot(grid[:, 0])
    if reconstruction is not None:
        t, mag, sigma, bands = reconstruction
        keep = t >= 0  # the fingerprint says nothing about the time before the first detection
        for j, name in enumerate(bands):
            c = BAND_COLOURS[name]
            ax.plot(t[keep], mag[j][keep], color=c, lw=1.5, label=f"{name} decoded from fingerprint")
            ax.fill_between(t[keep], (mag[j] - sigma[j])[keep], (mag[j] + sigma[j])[keep], color=c, alpha=0.12, lw=0)
    _draw_lightcurve(ax, lc, lc.time[0])
    ax.set_xlabel("days since first detection")
    ax.set_ylabel("magnitude (AB)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    finite = lc.mag[np.isfinite(lc.mag)]
    if len(finite):
        ax.set_ylim(finite.max() + 1.0, finite.min() - 1.0)
    else:
        ax.invert_yaxis()
    spans = [_span(lc)] + [_span(nb) for nb, _, _ in neighbours[:n_nb]]
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    pad = max(1.0, 0.03 * (hi - lo))
    ax.set_xlim(lo - pad, hi + pad)
    for i, (nb, sim, label) in enumerate(neighbours[:n_nb]):
        a = fig.add_subplot(grid[i, 1])
        _draw_lightcurve(a, nb, nb.time[0], small=True)
        a.invert_yaxis()
        a.set_xlim(lo - pad, hi + pad)
        a.set_title(f"{nb.object_id}  {label or '?'}  cos={sim:.3f}", fontsize=8)
        a.set_xlabel("days since first detection", fontsize=7)
        a.set_ylabel("mag", fontsize=7)
        a.tick_params(labelsize=7)
    if not neighbours:
        a = fig.add_subplot(grid[0, 1])
        a.text(0.5, 0.5, "no neighbours in the catalogue", ha="center", va="center", fontsize=9)
        a.axis("off")
    return fig


def render_plot(
    lc: LightCurve,
    reconstruction: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None,
    neighbours: list[tuple[LightCurve, float, str | None]],
    title: str,
) -> bytes:
    """PNG bytes of :func:`plot_figure`. ``reconstruction`` = (t_rel grid, mag (bands, T), sigma (bands, T),
    band names); ``neighbours`` = (light curve, cosine similarity, predicted class)."""
    fig = plot_figure(lc, reconstruction, neighbours, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
