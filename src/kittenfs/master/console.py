"""The web console: one page, its script and its style, shipped in the package and served
by the master at ``/ui`` (docs/console.md).

The assets hold no data and no secret.  Everything the console shows it reads from the API
with the credential its user logs in with, kept in the browser tab (sessionStorage): so the
page is open, as ``/health`` is, while every cluster fact, key and job stays behind the
API's own access rules, auth on or off alike.  Its headers keep the page to itself: it runs
only its own script and style, talks only to this master, and is never framed.
"""

from importlib import resources

from aiohttp import web

from ..httputil import Handler
from .access import Need

#: Each path the console answers, with its file (in ``master/ui``) and type.
ASSETS: dict[str, tuple[str, str]] = {
    "/ui": ("index.html", "text/html"),
    "/ui/": ("index.html", "text/html"),
    "/ui/console.js": ("console.js", "text/javascript"),
    "/ui/console.css": ("console.css", "text/css"),
}

#: What every console answer carries: its own script and style only, this origin only.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

_FILES = resources.files("kittenfs.master").joinpath("ui")
_BODIES = {name: _FILES.joinpath(name).read_bytes() for name, _ in set(ASSETS.values())}


async def asset(request: web.Request) -> web.Response:
    """GET|HEAD /ui and its assets."""
    name, kind = ASSETS[request.path]
    return web.Response(body=_BODIES[name], content_type=kind, charset="utf-8", headers=HEADERS)


#: The console's routes, as handlers.py's table takes them: open to anyone.
ROUTES: dict[str, tuple[tuple[str, ...], Need, Handler]] = dict.fromkeys(
    ASSETS, (("GET", "HEAD"), Need.OPEN, asset)
)
