"""The catalogue browser at ``/``, driven in headless Chromium (playwright) against the real service.

The service runs as a subprocess (``tests/_server.py``) on the demo catalogue with
``RTF_READ_API_KEY`` set, so the page is also checked to work with a guarded service: lists and
objects open without a key, the plot says a key is needed, and with the key saved it shows.
Every test checks that the page logged no console error and sent no request off 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests._server import Server

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
if CHROMIUM is None:
    pytest.skip(
        "no chromium on PATH or at /usr/bin/chromium (apt-get install chromium); the browser tests need it",
        allow_module_level=True,
    )

READ_KEY = "web-test-read-key"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_file):
    d = tmp_path_factory.mktemp("web")
    env = {
        "RTF_DATABASE_URL": f"sqlite:///{d / 'rtf.db'}",
        "RTF_INDEX_DIR": str(d / "index"),
        "RTF_DEMO": "1",
        "RTF_DEMO_FILE": str(demo_file),
        "RTF_PRECISION": "fp32",
        "RTF_SYNC_INTERVAL": "0",
        "RTF_READ_API_KEY": READ_KEY,
    }
    with Server(env) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Watch:
    """What a page did that a test checks at the end: console errors, page errors, requested URLs."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: self.urls.append(r.url))

    def check(self, allowed_errors: str | None = None) -> None:
        unexpected = [e for e in self.errors if not (allowed_errors and re.search(allowed_errors, e))]
        assert unexpected == [], f"console errors: {unexpected}"
        remote = [
            u for u in self.urls if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname != "127.0.0.1"
        ]
        assert remote == [], f"requests that left 127.0.0.1: {remote}"
        assert self.urls, "the page made no request at all"


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.watch = Watch(pg)
    yield pg
    context.close()


def rows(page, selector: str = "#list tbody tr"):
    page.wait_for_selector(selector)
    return page.locator(selector)


def test_anomalies_object_and_neighbour(page, server):
    page.goto("/")
    first = rows(page).first
    assert rows(page).count() == 50  # one page
    api = httpx.get(server.url + "/v1/anomalies?limit=50").json()["items"]
    shown = page.locator("#list tbody tr td:nth-child(2)").all_inner_texts()
    assert shown == [a["object_id"] for a in api]  # the API's order, most anomalous first
    cells = first.locator("td").all_inner_texts()
    assert cells[2] == (api[0]["label"] or "—") and cells[3].startswith(f"{api[0]['score']:.4f}")
    assert cells[4] == str(api[0]["n_detections"])

    first.locator("a").click()
    oid = api[0]["object_id"]
    assert page.locator("h1.object-id").inner_text() == oid
    assert page.url.endswith("#/object/" + oid)  # shareable
    lc = page.locator("svg.lightcurve")
    detail = httpx.get(f"{server.url}/v1/objects/{oid}").json()
    assert int(lc.get_attribute("data-points")) == len(detail["lightcurve"]["detections"]) > 0
    assert lc.locator(".det circle").count() == len(detail["lightcurve"]["detections"])
    decoded = httpx.get(f"{server.url}/v1/objects/{oid}/decoded").json()
    assert lc.locator(".decoded path.curve").count() == len(decoded["bands"]) > 0  # the model's curve, per band
    assert oid in lc.get_attribute("aria-label")
    terms, values = page.locator("dl.facts dt").all_inner_texts(), page.locator("dl.facts dd").all_inner_texts()
    facts = dict(zip(terms, values, strict=True))
    assert facts["Detections"] == str(detail["n_detections"]) and facts["Predicted class"] == detail["label"]
    assert "[object" not in page.locator("main").inner_text()
    probs = page.locator("#classification table.probs th").all_inner_texts()
    assert probs[0] == detail["label"] and set(probs) == set(detail["probabilities"])  # most probable first
    nb_rows = rows(page, "#neighbours tbody tr")
    api_nbs = httpx.get(f"{server.url}/v1/objects/{oid}/neighbors?k=10").json()["neighbors"]
    assert [nb_rows.nth(i).get_attribute("data-object") for i in range(10)] == [n["object_id"] for n in api_nbs]
    page.wait_for_selector("#neighbours tbody tr:nth-child(10) svg.spark circle")  # small light curves drawn
    neighbour = nb_rows.nth(1).get_attribute("data-object")
    assert neighbour != oid

    shot = page.screenshot(full_page=True)
    assert_not_blank(shot)

    nb_rows.nth(1).locator("a").click()
    page.wait_for_function("id => document.querySelector('h1.object-id')?.textContent === id", arg=neighbour)
    assert page.url.endswith("#/object/" + neighbour)
    page.go_back()  # the browser's back button returns to the first object
    page.wait_for_function("id => document.querySelector('h1.object-id')?.textContent === id", arg=oid)
    page.watch.check()


def assert_not_blank(png: bytes) -> None:
    """A good share of the screenshot differs from its most common colour (the background), in several colours."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img.thumbnail((400, 400))
    colours = img.getcolors(maxcolors=1 << 20)
    background = max(colours)[0]
    total = img.width * img.height
    assert 1 - background / total > 0.10, f"{1 - background / total:.0%} of the screenshot is not background"
    assert len(colours) > 50, "the screenshot has almost no colours"


def test_paging_and_class_filter(page, server):
    page.goto("/")
    rows(page)
    page.get_by_role("button", name=re.compile("Show 50 more")).click()
    page.wait_for_function("() => document.querySelectorAll('#list tbody tr').length === 100")
    ids = page.locator("#list tbody tr td:nth-child(2)").all_inner_texts()
    assert len(set(ids)) == 100  # the cursor's next page: no repeats
    first = httpx.get(server.url + "/v1/anomalies?limit=50").json()
    second = httpx.get(server.url + f"/v1/anomalies?limit=50&cursor={first['next_cursor']}").json()
    assert ids == [a["object_id"] for a in first["items"] + second["items"]]

    objects = httpx.get(server.url + "/v1/objects?limit=100").json()["items"]
    label = next(o["label"] for o in objects if o["label"] != first["items"][0]["label"])  # not the first row's
    page.wait_for_selector(f"#f-class option[value='{label}']", state="attached")  # classes from /v1/models
    page.select_option("#f-class", label)
    page.get_by_role("button", name="Apply").click()
    expected = [a["object_id"] for a in httpx.get(server.url + f"/v1/anomalies?limit=50&class={label}").json()["items"]]
    assert expected and expected != ids[: len(expected)]  # the filter changes the list
    page.wait_for_function(
        "ids => [...document.querySelectorAll('#list tbody tr td:nth-child(2)')]"
        ".map(td => td.textContent).join() === ids.join()",
        arg=expected,
    )
    assert page.locator("#list tbody tr td:nth-child(3)").all_inner_texts() == [label] * len(expected)
    assert f"class={label}" in page.url  # a shareable link to the filtered list

    page.goto("/#/objects?min_detections=25")  # a shared link, straight to a filtered list
    counts = [int(c) for c in rows(page).locator("td:nth-child(6)").all_inner_texts()]
    assert counts and min(counts) >= 25
    assert page.locator("#f-mindet").input_value() == "25"
    page.watch.check()


def test_search_box_and_errors(page, server):
    oid = httpx.get(server.url + "/v1/objects?limit=3").json()["items"][2]["object_id"]
    page.goto("/")
    rows(page)
    page.fill("#goto-q", oid)
    page.press("#goto-q", "Enter")
    page.wait_for_function("id => document.querySelector('h1.object-id')?.textContent === id", arg=oid)
    assert page.locator("svg.lightcurve .det").count() > 0

    page.fill("#goto-q", "no_such_object")
    page.press("#goto-q", "Enter")
    alert = page.get_by_role("alert")
    assert "404" in alert.inner_text() and "no_such_object" in alert.inner_text()  # the API's message, shown
    # both error forms read well: FastAPI's {"detail": [...]} and RFC 9457 problem+json
    legacy = page.evaluate(
        "() => problemText(422, 'Unprocessable Entity', {detail: [{loc: ['body', 'k'], msg: 'too big'}]})"
    )
    assert legacy == "422 Unprocessable Entity — k: too big"
    rfc9457 = page.evaluate(
        "() => problemText(404, '', {type: 'about:blank', title: 'Not Found', status: 404, detail: 'gone'})"
    )
    assert rfc9457 == "404 — Not Found; gone"
    assert page.evaluate("() => problemText(401, 'Unauthorized', {detail: 'missing key'})").endswith(
        "under “API key” at the top)"
    )
    page.watch.check(allowed_errors=r"status of 404")


def test_model_figure_needs_the_read_key(page, server):
    oid = httpx.get(server.url + "/v1/objects?limit=1").json()["items"][0]["object_id"]
    page.goto(f"/#/object/{oid}")
    page.wait_for_selector("svg.lightcurve")
    page.locator(".model-figure summary").click()
    alert = page.locator(".model-figure [role=alert]")
    assert "401" in alert.inner_text() and "API key" in alert.inner_text()

    page.locator(".key summary").click()
    page.fill("#api-key", READ_KEY)
    page.locator("#key-form button[type=submit]").click()
    assert page.locator("#key-state").inner_text() == "A key is saved."
    page.reload()
    page.locator(".model-figure summary").click()
    img = page.locator(".model-figure img.plot")
    img.wait_for()
    page.wait_for_function("() => document.querySelector('.model-figure img.plot').naturalWidth > 100")
    assert "reconstruction" in img.get_attribute("alt")
    page.watch.check(allowed_errors=r"status of 401")


def test_search_by_pasted_lightcurve(page, server):
    page.goto("/")
    rows(page)
    page.evaluate("key => localStorage.setItem('rtf-api-key', key)", READ_KEY)
    oid = httpx.get(server.url + "/v1/objects?limit=5").json()["items"][4]["object_id"]
    lc = httpx.get(f"{server.url}/v1/objects/{oid}").json()["lightcurve"]
    lc |= {"object_id": "pasted_copy", "label": None}
    page.fill("#goto-q", json.dumps(lc))  # the header box takes a JSON light curve too
    page.press("#goto-q", "Enter")
    result = page.locator("section.query-result")
    result.wait_for()
    assert result.locator("h2").inner_text() == "pasted_copy"
    assert int(result.locator("svg.lightcurve").get_attribute("data-points")) == len(lc["detections"])
    top = result.locator("table.neighbours tbody tr").first
    assert top.get_attribute("data-object") == oid  # the stored copy is its own nearest neighbour
    assert float(top.locator("td:nth-child(5)").inner_text()) > 0.99
    assert result.locator("table.probs").first.locator("tr").count() >= 2

    page.fill(
        "#s-json", '{"object_id": "bad", "detections": [{"jd": 2459000.5, "band": "q", "mag": 19, "mag_err": 0.1}]}'
    )
    page.get_by_role("button", name="Classify and find neighbours").click()
    alert = page.locator("#search-results [role=alert]")
    assert "422" in alert.inner_text() and "band" in alert.inner_text()  # the validation error, with its field
    page.watch.check(allowed_errors=r"status of 422")


def test_search_by_avro_file(page, tmp_path):
    from encoder.readers.ztf_avro import write_ztf_avro
    from tests._server import synth_lightcurves

    lcs = synth_lightcurves(3, seed=21)
    write_ztf_avro(lcs, tmp_path / "alerts.avro")
    page.goto("/#/search")
    page.evaluate("key => localStorage.setItem('rtf-api-key', key)", READ_KEY)
    page.set_input_files("#s-file", str(tmp_path / "alerts.avro"))
    page.fill("#s-k", "5")
    page.get_by_role("button", name="Classify and find neighbours").click()
    page.wait_for_function("() => document.querySelectorAll('section.query-result').length === 3")
    results = page.locator("section.query-result")
    assert sorted(results.locator("h2").all_inner_texts()) == sorted(lc.object_id for lc in lcs)
    for i in range(3):
        assert results.nth(i).locator("table.neighbours tbody tr").count() == 5
        assert results.nth(i).locator("table.probs").first.locator("tr").count() >= 2
    page.watch.check()


def test_static_headers(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache" and "default-src 'none'" in r.headers["content-security-policy"]
    assert httpx.get(server.url + "/", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    js = re.search(r'src="(/static/app\.js\?v=[0-9a-f]{16})"', r.text).group(1)
    a = httpx.get(server.url + js)
    assert a.status_code == 200 and a.headers["content-type"].startswith("text/javascript")
    assert "immutable" in a.headers["cache-control"]
    assert httpx.get(server.url + "/static/app.js").headers["cache-control"] == "no-cache"  # unversioned: revalidate
    assert re.search(r'href="/static/style\.css\?v=[0-9a-f]{16}"', r.text)
    assert httpx.get(server.url + "/static/nope.js").status_code == 404
    assert httpx.get(server.url + "/static/..%2fmain.py").status_code == 404
    assert "/" not in httpx.get(server.url + "/openapi.json").json()["paths"]  # not part of the API
