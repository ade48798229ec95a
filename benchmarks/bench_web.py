"""The catalogue browser (``/``) timed in headless Chromium against the real service on a large catalogue.

    python -m benchmarks.bench_web --n 100000 --workdir var/bench100k     # the target size (builds once, then reuses)
    python -m benchmarks.bench_web --n 20000 --workdir var/bench-web20k   # a smaller one that builds in minutes

1. Build (skipped when the workdir's database already holds ``--n`` objects): the catalogue of
   ``benchmarks/bench_neighbors_http.py`` (synthetic ZTF light curves through ``Catalog.ingest``; the
   same workdir serves both benchmarks).
2. Start the real service (uvicorn, one process, ``RTF_THREADS=1``) on it.
3. Drive Debian's chromium (playwright, headless) and read the page's own ``performance.mark``s:
   * **first load**: ``/`` in a fresh browser context (empty cache) until the anomaly list's rows are in
     the page (navigation start to mark ``rtf:list``; target <= 1 s), then the same page reloaded (warm cache);
   * **object page**: a random object opened from the list the way a click does (a hash change), until its
     summary, light curve, classification and neighbour table are in the page (``rtf:object``; target
     <= 300 ms), and until the neighbours' small light curves are drawn too (``rtf:sparklines``);
   * **object link**: ``/#/object/<id>`` opened cold in a fresh context (a shared link).

Chromium and the service share this machine's cores: the figures include both.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.bench_neighbors_http import build
from tests._server import Server

ROOT = Path(__file__).resolve().parents[1]

MARK = "name => performance.getEntriesByName(name)[0]?.startTime ?? null"
HAS_MARK = "name => performance.getEntriesByName(name).length > 0"


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": len(a), "p50": float(np.median(a)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def check_page(page) -> None:
    alerts = page.locator("[role=alert]")
    if alerts.count():
        raise RuntimeError(f"the page shows an error: {alerts.first.inner_text()}")


def first_loads(browser, url: str, reps: int) -> tuple[list[float], list[float], int]:
    """Navigation start to the anomaly list rendered: cold (a fresh context each time) and reloaded."""
    cold, warm, rows = [], [], 0
    for _ in range(reps):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url + "/", wait_until="commit")
        page.wait_for_function(HAS_MARK, arg="rtf:list")
        cold.append(page.evaluate(MARK, "rtf:list"))
        rows = page.locator("#list tbody tr").count()
        check_page(page)
        page.reload(wait_until="commit")
        page.wait_for_function(HAS_MARK, arg="rtf:list")
        warm.append(page.evaluate(MARK, "rtf:list"))
        context.close()
    return cold, warm, rows


def object_views(browser, url: str, ids: list[str]) -> tuple[list[float], list[float]]:
    """From a hash change (what clicking an object's link does) to the object page and to its sparklines."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url + "/")
    page.wait_for_selector("#list tbody tr")
    rendered, complete = [], []
    for oid in ids:
        t0 = page.evaluate(
            "id => { performance.clearMarks(); const t = performance.now();"
            " location.hash = '#/object/' + encodeURIComponent(id); return t; }",
            oid,
        )
        page.wait_for_function(HAS_MARK, arg="rtf:sparklines")
        rendered.append(page.evaluate(MARK, "rtf:object") - t0)
        complete.append(page.evaluate(MARK, "rtf:sparklines") - t0)
        if page.locator("h1.object-id").inner_text() != oid or page.locator("#neighbours tbody tr").count() != 10:
            raise RuntimeError(f"the object page of {oid} is incomplete")
        check_page(page)
    context.close()
    return rendered, complete


def object_links(browser, url: str, ids: list[str]) -> list[float]:
    out = []
    for oid in ids:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{url}/#/object/{oid}", wait_until="commit")
        page.wait_for_function(HAS_MARK, arg="rtf:object")
        out.append(page.evaluate(MARK, "rtf:object"))
        check_page(page)
        context.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="catalogue size to build")
    ap.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench100k")
    ap.add_argument("--measure-only", action="store_true", help="use the workdir's catalogue as it is")
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--batch", type=int, default=1000, help="light curves per Catalog.ingest call")
    ap.add_argument("--loads", type=int, default=20, help="first loads of / (each in a fresh context)")
    ap.add_argument("--objects", type=int, default=100, help="object pages opened from the list")
    ap.add_argument("--links", type=int, default=10, help="object pages opened cold from a link")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    a.workdir.mkdir(parents=True, exist_ok=True)
    url, index_dir = f"sqlite:///{a.workdir / 'rtf.db'}", a.workdir / "index"
    if not a.measure_only:
        t0 = time.perf_counter()
        build(url, index_dir, None, a.n, a.seed, a.batch)
        print(f"catalogue ready in {time.perf_counter() - t0:.0f} s", flush=True)
    env = {"RTF_DATABASE_URL": url, "RTF_INDEX_DIR": str(index_dir), "RTF_SYNC_INTERVAL": "0"}
    with Server(env) as srv, sync_playwright() as p:
        ready = httpx.get(srv.url + "/readyz").json()
        sizes = {"/": len(httpx.get(srv.url + "/").content)}
        sizes |= {f"/static/{n}": len(httpx.get(f"{srv.url}/static/{n}").content) for n in ("app.js", "style.css")}
        with sqlite3.connect(a.workdir / "rtf.db") as db:
            ids = [
                r[0]
                for r in db.execute("SELECT object_id FROM objects ORDER BY random() LIMIT ?", (a.objects + a.links,))
            ]
        random.Random(5).shuffle(ids)
        browser = p.chromium.launch(executable_path=a.chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            cold, warm, rows = first_loads(browser, srv.url, a.loads)
            rendered, complete = object_views(browser, srv.url, ids[: a.objects])
            links = object_links(browser, srv.url, ids[a.objects :])
        finally:
            browser.close()
    res = {
        "readyz": ready,
        "bytes": sizes,
        "list_rows": rows,
        "first load of / (cold cache)": stats(cold),
        "/ reloaded (warm cache)": stats(warm),
        "object page from the list": stats(rendered),
        "object page + neighbour sparklines": stats(complete),
        "object page from a link (cold)": stats(links),
    }
    print(json.dumps(res, indent=2))
    print(f"\n{ready['objects']:,} objects; page {sum(sizes.values()):,} bytes ({sizes})")
    print("\n| view | n | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name, r in res.items():
        if isinstance(r, dict) and "p50" in r:
            print(f"| {name} | {r['n']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['max']:.0f} |")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
