"""The object plot as an astronomer would publish it: labelled axes and classes on every panel, one
time range for all panels, a legend entry for upper limits, no decoded curve before the first detection."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from app.plots import plot_figure, render_plot
from tests._server import synth_lightcurves


def test_every_panel_is_labelled_and_shares_the_time_range():
    lcs = [lc for lc in synth_lightcurves(40, seed=3131) if len(lc.ul_time)][:4]
    lc, nbs = lcs[0], [(n, 0.9 - 0.1 * i, c) for i, (n, c) in enumerate(zip(lcs[1:], ["SNIa", "TDE", None], strict=True))]
    t = np.linspace(-10, lc.duration + 20, 50)
    recon = (t, np.full((1, 50), 19.0), np.full((1, 50), 0.1), ["g"])
    fig = plot_figure(lc, recon, nbs, "title")
    try:
        main, *panels = fig.axes
        assert len(panels) == 3
        for ax in fig.axes:
            assert ax.get_xlabel() == "days since first detection" and ax.get_ylabel()
            assert ax.get_xlim() == main.get_xlim()
        assert [p.get_title().split()[1] for p in panels] == ["SNIa", "TDE", "?"]
        legend = [t.get_text() for t in main.get_legend().get_texts()]
        assert any("upper limits" in x for x in legend) and any("decoded" in x for x in legend)
        decoded = [line for line in main.get_lines() if line.get_label().endswith("decoded from fingerprint")]
        assert decoded and min(line.get_xdata().min() for line in decoded) >= 0
        lo, hi = main.get_xlim()
        assert lo < 0 < hi and hi >= max(lc.duration, *(n.duration for n, _, _ in nbs))
        assert main.get_ylim()[0] > main.get_ylim()[1]  # magnitudes: bright up
    finally:
        plt.close(fig)
    png = render_plot(lc, None, [], "alone")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
