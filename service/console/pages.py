"""The console's pages and actions under /console (docs/console.md).

Server-rendered (Jinja2) from the same data the JSON API returns (service/insight.py).
Every page needs a login (service/access.py): without one it answers 401 with the login
form. Every POST but the login's needs the session's CSRF token: without it, 401 and
nothing changes. Bulk actions on dead letters first say how many entries they will touch
and ask to confirm; then they show what they did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from callhook.actions import ActionRefused, UnknownCall
from callhook.journal.reader import BadCursor
from callhook.record import CallStatus
from service.access import Access
from service.api import BadRequest, call_filter
from service.console import charts, format
from service.insight import Insight

_HERE = files("service.console")
_ENVIRONMENT = Environment(
    loader=FileSystemLoader(str(_HERE / "templates")),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
format.install(_ENVIRONMENT)
_ENVIRONMENT.globals["bars"] = charts.bars
TEMPLATES = Jinja2Templates(env=_ENVIRONMENT)

#: the console's own assets only; frames, plugins and other origins refused
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
#: what a result code in a redirect's query says (codes, not text: a link cannot put its
#: own words on the console)
NOTICES = {
    "redeliver": "Redelivery enqueued.",
    "re-enrich": "Re-enrichment enqueued: the call is fetched from the vendor again.",
}
MAX_FORM_FIELDS = 1000
MAX_FORM_BYTES = 256 * 1024

Page = Callable[[Request, str], Awaitable[Response]]


def access_of(request: Request) -> Access:
    found: Access = request.app.state.console_access
    return found


def insight(request: Request) -> Insight:
    found: Insight = request.app.state.insight
    return found


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    session: str | None,
    status_code: int = 200,
) -> Response:
    config = insight(request).config
    values = {
        "session": session,
        "csrf": access_of(request).csrf_token(session) if session else "",
        "sources": sorted(config.sources),
        "sink_names": [sink.name for sink in config.sinks],
        "statuses": [status.value for status in CallStatus],
        **context,
    }
    response = TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)
    return secured(response)


def login_page(
    request: Request, *, problem: str | None, status_code: int, next_path: str | None = None
) -> Response:
    """The login form; after login, back to `next_path`, else the page asked for (GET)."""
    if next_path is None:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        asked = request.method == "GET" and not target.startswith("/console/login")
        next_path = target if asked else "/console/"
    return render(
        request,
        "login.html",
        {"problem": problem, "next": next_path},
        session=None,
        status_code=status_code,
    )


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A console page or action behind the login (and, for POSTs, the CSRF token)."""

    async def run(request: Request) -> Response:
        session = access_of(request).session(request)
        if session is None:
            return login_page(request, problem=None, status_code=401)
        if request.method == "POST":
            form = await read_form(request)
            if not access_of(request).csrf_matches(session, str(form.get("csrf") or "")):
                return login_page(
                    request, problem="The form was out of date; log in again.", status_code=401
                )
        try:
            return await handler(request, session)
        except (BadRequest, BadCursor) as exc:
            return render(
                request,
                "result.html",
                {"title": "Bad request", "message": str(exc)},
                session=session,
                status_code=400,
            )

    return run


async def read_form(request: Request) -> FormData:
    """The request's form, parsed once per request. It must declare its length (browsers
    do), at most MAX_FORM_BYTES: the login form is open to anyone. Files are refused."""
    cached: FormData | None = getattr(request.state, "form", None)
    if cached is None:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise HTTPException(411, "a form needs a Content-Length")
        if int(declared) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a form of at most {MAX_FORM_BYTES} bytes")
        cached = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        request.state.form = cached
    return cached


def safe_next(target: str) -> str:
    """Only the console's own pages, so a login link cannot send anyone elsewhere."""
    if target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/"


def redirect(target: str) -> Response:
    return secured(RedirectResponse(target, status_code=303))


async def login(request: Request) -> Response:
    access = access_of(request)
    if request.method == "GET":
        given = request.query_params.get("token")
        if given is None:
            return login_page(request, problem=None, status_code=200)
        if not access.token_matches(given):
            return login_page(request, problem="Wrong token.", status_code=401)
        response = redirect("/console/")
    else:
        form = await read_form(request)
        next_path = safe_next(str(form.get("next") or "/console/"))
        if not access.token_matches(str(form.get("token") or "")):
            return login_page(request, problem="Wrong token.", status_code=401, next_path=next_path)
        response = redirect(next_path)
    access.start_session(request, response)
    return response


@page
async def logout(request: Request, session: str) -> Response:
    response = redirect("/console/login")
    access_of(request).end_session(response)
    return response


@page
async def overview(request: Request, session: str) -> Response:
    data = await insight(request).overview()
    return render(request, "overview.html", {"overview": data, "nav": "overview"}, session=session)


@page
async def calls(request: Request, session: str) -> Response:
    # a form's empty fields mean "any"
    params = {key: value for key, value in request.query_params.items() if value}
    where = call_filter(params)
    query = (params.get("q") or "").strip() or None
    data = await insight(request).calls(
        where, cursor=params.get("cursor") or None, limit=50, query=query
    )
    kept = {
        key: params[key]
        for key in ("source", "status", "failed", "since", "until", "q")
        if params.get(key)
    }
    more = None
    if data["next_cursor"]:
        more = "/console/calls?" + urlencode({**kept, "cursor": data["next_cursor"]})
    return render(
        request,
        "calls.html",
        {"calls": data["calls"], "filters": kept, "more": more, "nav": "calls"},
        session=session,
    )


@page
async def call(request: Request, session: str) -> Response:
    source, call_id = request.path_params["source"], request.path_params["call_id"]
    data = await insight(request).call(source, call_id)
    if data is None:
        return render(
            request,
            "result.html",
            {"title": "No such call", "message": f"Nothing is known of {source} / {call_id}."},
            session=session,
            status_code=404,
        )
    notice = NOTICES.get(request.query_params.get("done", ""))
    return render(
        request, "call.html", {"call": data, "notice": notice, "nav": "calls"}, session=session
    )


@page
async def redeliver(request: Request, session: str) -> Response:
    source, call_id = request.path_params["source"], request.path_params["call_id"]
    form = await read_form(request)
    sink = str(form.get("sink") or "")
    try:
        await insight(request).actions.redeliver(
            source, call_id, [sink] if sink else None, by="console"
        )
    except ActionRefused as exc:
        return refused(request, session, exc)
    return redirect(call_path(source, call_id) + "?done=redeliver")


@page
async def re_enrich(request: Request, session: str) -> Response:
    source, call_id = request.path_params["source"], request.path_params["call_id"]
    try:
        await insight(request).actions.re_enrich(source, call_id, by="console")
    except ActionRefused as exc:
        return refused(request, session, exc)
    return redirect(call_path(source, call_id) + "?done=re-enrich")


def refused(request: Request, session: str, exc: ActionRefused) -> Response:
    return render(
        request,
        "result.html",
        {"title": "Not done", "message": str(exc)},
        session=session,
        status_code=404 if isinstance(exc, UnknownCall) else 400,
    )


def call_path(source: str, call_id: str) -> str:
    return f"/console/calls/{source}/{call_id}"


DEAD_LETTER_FILTERS = ("stage", "sink", "source", "reason_class")


@page
async def dead_letters(request: Request, session: str) -> Response:
    params = request.query_params
    stage = params.get("stage") or None
    if stage not in (None, "enrich", "deliver"):
        raise BadRequest("stage: enrich or deliver")
    data = await insight(request).dead_letters(
        stage=stage, sink=params.get("sink") or None, source=params.get("source") or None
    )
    reason_class = params.get("reason_class") or None
    if reason_class:
        data["dead_letters"] = [
            entry for entry in data["dead_letters"] if entry["reason_class"] == reason_class
        ]
    filters = {key: params[key] for key in DEAD_LETTER_FILTERS if params.get(key)}
    return render(
        request,
        "dead_letters.html",
        {**data, "filters": filters, "nav": "dead-letters"},
        session=session,
    )


async def bulk(request: Request, session: str, action: str) -> Response:
    """Replay or purge: by ids or by filter; confirm first unless it is one replay."""
    form = await read_form(request)
    ids = [str(value) for value in form.getlist("id") if value]
    filters = {key: str(form.get(key) or "") or None for key in DEAD_LETTER_FILTERS}
    if filters["stage"] not in (None, "enrich", "deliver"):
        raise BadRequest("stage: enrich or deliver")
    if not ids and form.get("all") != "yes" and not any(filters.values()):
        raise BadRequest("say which dead letters: choose entries or a filter")
    chosen = await insight(request).select_dead_letters(ids=ids or None, **filters)
    one_replay = action == "replay" and len(ids) == 1
    if form.get("confirm") != "yes" and not one_replay:
        return render(
            request,
            "confirm.html",
            {
                "action": action,
                "count": len(chosen),
                "ids": ids,
                "filters": {key: value for key, value in filters.items() if value},
                "all": form.get("all") == "yes",
                "nav": "dead-letters",
            },
            session=session,
        )
    actions = insight(request).actions
    if action == "replay":
        done = len(await actions.replay(chosen, by="console"))
        message = f"Replayed {done} of {len(chosen)} dead letter(s)."
    else:
        done = await actions.purge(chosen, by="console")
        message = f"Purged {done} of {len(chosen)} dead letter(s)."
    if done < len(chosen):
        message += " The others were gone meanwhile (replayed, purged or expired)."
    return render(
        request,
        "result.html",
        {"title": message, "message": None, "back": "/console/dead-letters"},
        session=session,
    )


@page
async def replay(request: Request, session: str) -> Response:
    return await bulk(request, session, "replay")


@page
async def purge(request: Request, session: str) -> Response:
    return await bulk(request, session, "purge")


@page
async def sources_and_sinks(request: Request, session: str) -> Response:
    data = await insight(request).health()
    rejections = await insight(request).rejections()
    return render(
        request,
        "config.html",
        {"health": data, "rejections": rejections, "nav": "config"},
        session=session,
    )


def routes() -> list[BaseRoute]:
    calls_path = "/calls/{source}/{call_id}"
    return [
        Route("/", overview, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/calls", calls, methods=["GET"]),
        Route(f"{calls_path}/redeliver", redeliver, methods=["POST"]),
        Route(f"{calls_path}/re-enrich", re_enrich, methods=["POST"]),
        Route(calls_path, call, methods=["GET"]),
        Route("/dead-letters", dead_letters, methods=["GET"]),
        Route("/dead-letters/replay", replay, methods=["POST"]),
        Route("/dead-letters/purge", purge, methods=["POST"]),
        Route("/config", sources_and_sinks, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(_HERE / "static")), name="static"),
    ]
