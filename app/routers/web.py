"""GET / (the catalogue browser, a static page: ``app/web``) and GET /static/{name} (its assets).

The page is one HTML file, one script and one stylesheet, read once; the browser does the rest
against the JSON API (no server-side rendering, nothing from another origin). The HTML names each
asset with its content hash (``app.js?v=...``), so assets are cached for a year and the HTML is
revalidated on every load (``no-cache`` + ETag): a new release is picked up at the next load.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# Everything the page uses comes from this origin: the browser refuses anything else, and frames
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


class Asset:
    def __init__(self, body: bytes, media_type: str):
        self.body, self.media_type = body, media_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@lru_cache(maxsize=1)
def assets() -> tuple[Asset, dict[str, Asset]]:
    """The page (with its assets' hashes filled in) and the assets by name, read once."""
    static = {
        p.name: Asset(p.read_bytes(), MEDIA_TYPES[p.suffix])
        for p in sorted(WEB_DIR.iterdir())
        if p.suffix in MEDIA_TYPES
    }
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    for name, asset in static.items():
        html = html.replace(f"/static/{name}?v=dev", f"/static/{name}?v={asset.etag.strip(chr(34))}")
    return Asset(html.encode(), "text/html; charset=utf-8"), static


def _send(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": cache_control, **SECURITY_HEADERS}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def page(request: Request) -> Response:
    """The catalogue browser (revalidated at each load, so a new release shows at once)."""
    return _send(request, assets()[0], "no-cache")


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    """The page's script and stylesheet; their URLs carry their hash, so they never go stale."""
    asset = assets()[1].get(name)
    if asset is None:
        raise HTTPException(404, f"no static file {name!r}")
    immutable = request.query_params.get("v") == asset.etag.strip('"')
    return _send(request, asset, "public, max-age=31536000, immutable" if immutable else "no-cache")
