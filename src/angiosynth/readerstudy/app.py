"""The reader-study web app: FastAPI, Jinja2 templates and plain JavaScript, all served locally.

Routes (every one checks the caller's token and role; errors answer 4xx with {"detail": ...}):

    GET  /s/{token}                  personal link: stores the token in an HttpOnly, SameSite=Lax
                                     cookie and redirects to the person's page
    GET  /                           redirects to the person's page
    GET  /screen                     screener: keep or discard each image
    GET  /rate                       rater: score the three segments of each kept image
    GET  /admin                      admin: progress per person, CSV downloads
    GET  /assets/{name}              the pages' JavaScript and CSS (a fixed list of files)
    GET  /favicon.ico                no icon (204)
    GET  /api/queue                  the caller's queue (opaque ids) and own answers
    GET  /api/images/{image_id}      an image of the caller's queue (the stripped PNG)
    POST /api/screening/{image_id}   screener: {"keep": true | false}
    POST /api/ratings/{image_id}     rater: {"scores": {"proximal": 1-5 | "NP" | "NA", ...},
                                     "external": true | false} (either part may be left out)
    GET  /api/progress               admin: answered / total per person
    GET  /admin/ratings.csv          admin: the ratings.csv of `reader-study export`
    GET  /admin/screening.csv        admin: the screening.csv of `reader-study export`

Tokens are compared by their SHA-256 hashes with `hmac.compare_digest`. Every POST needs the
header X-CSRF-Token, HMAC-SHA256(token, "angiosynth csrf") in hex, which the server renders into
the person's page; a POST with an Origin header other than the server's own, or marked
Sec-Fetch-Site: cross-site, is refused. Raters see only opaque ids and their own answers, never
a condition, prompt, file name or anyone else's answers. `uvicorn_log_config` keeps the tokens
of personal links out of the access log.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from angiosynth.readerstudy.export import ratings_table, screening_table, to_csv_text
from angiosynth.readerstudy.storage import (
    IMAGES_DIR,
    SCORES,
    SEGMENTS,
    InvalidAnswer,
    Person,
    StudyStore,
    UnknownImage,
    is_public_id,
)

COOKIE_NAME = "angiosynth_reader"
CSRF_HEADER = "X-CSRF-Token"
_PACKAGE = Path(__file__).parent
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_HOME = {"screener": "/screen", "rater": "/rate", "admin": "/admin"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Keyboard shortcuts of the rater page, as documented on the page.
RATER_SHORTCUTS = (
    ("1 – 5", "score the focused segment (focus then moves to the next segment)"),
    ("n", "not present (NP) for the focused segment"),
    ("a", "not applicable (NA) for the focused segment"),
    ("↑ / ↓", "focus the previous / next segment"),
    ("e", "toggle external circulation"),
    ("Enter or →", "next image (once all three segments are answered)"),
    ("Backspace or ←", "previous image"),
    ("+ / − / 0", "zoom in / zoom out / reset zoom, pan and window/level"),
)
SCREENER_SHORTCUTS = (
    ("k", "keep and go to the next image"),
    ("d", "discard and go to the next image"),
    ("→ / ←", "next / previous image"),
    ("+ / − / 0", "zoom in / zoom out / reset zoom, pan and window/level"),
)
VIEWER_HELP = "Mouse: wheel zooms, drag pans, right-drag sets window (left-right) and level " \
    "(up-down); the sliders set them too."  # fmt: skip


@dataclass(frozen=True)
class StudyApp:
    """What the routes need: the store, the image folder, templates and assets."""

    store: StudyStore
    images_dir: Path
    templates: Jinja2Templates
    assets: dict[str, tuple[bytes, str]]


@dataclass(frozen=True)
class Caller:
    """The authenticated person of a request and the token they sent."""

    person: Person
    token: str

    @property
    def csrf(self) -> str:
        """The person's CSRF token."""
        return csrf_token(self.token)


class ScreeningBody(BaseModel):
    """The JSON body of a screening answer."""

    model_config = ConfigDict(extra="forbid")
    keep: StrictBool


class RatingBody(BaseModel):
    """The JSON body of a rating answer: some segments' scores and/or the external flag."""

    model_config = ConfigDict(extra="forbid")
    scores: dict[StrictStr, StrictInt | StrictStr] = Field(default_factory=dict)
    external: StrictBool | None = None


def csrf_token(token: str) -> str:
    """The CSRF token that belongs to a person's token."""
    return hmac.new(token.encode("utf-8"), b"angiosynth csrf", hashlib.sha256).hexdigest()


def _study(request: Request) -> StudyApp:
    return request.app.state.study


def _caller(request: Request) -> Caller:
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        raise HTTPException(401, "no token: open your personal link")
    person = _study(request).store.authenticate(token)
    if person is None:
        raise HTTPException(401, "unknown token: open your personal link")
    return Caller(person, token)


def _role(*roles: str):
    def dependency(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        if caller.person.role not in roles:
            raise HTTPException(403, f"not allowed for a {caller.person.role}")
        return caller

    return dependency


def _same_origin_with_csrf(request: Request, caller: Caller) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, "cross-origin request refused")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    sent = request.headers.get(CSRF_HEADER, "").encode("latin-1")
    if not hmac.compare_digest(sent, caller.csrf.encode("ascii")):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")


Screener = Annotated[Caller, Depends(_role("screener"))]
Reader = Annotated[Caller, Depends(_role("screener", "rater"))]
Rater = Annotated[Caller, Depends(_role("rater"))]
Admin = Annotated[Caller, Depends(_role("admin"))]
Anyone = Annotated[Caller, Depends(_caller)]


def _screener_post(request: Request, caller: Screener) -> Caller:
    _same_origin_with_csrf(request, caller)
    return caller


def _rater_post(request: Request, caller: Rater) -> Caller:
    _same_origin_with_csrf(request, caller)
    return caller


ScreenerPost = Annotated[Caller, Depends(_screener_post)]
RaterPost = Annotated[Caller, Depends(_rater_post)]

router = APIRouter()


@router.get("/s/{token}")
def sign_in(token: str, request: Request) -> Response:
    """Stores a personal token in the cookie and goes to the person's page."""
    person = _study(request).store.authenticate(token)
    if person is None:
        raise HTTPException(401, "unknown token: check your personal link")
    response = RedirectResponse(_HOME[person.role], status_code=303)
    response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.get("/")
def home(caller: Anyone) -> Response:
    """Redirects to the caller's page."""
    return RedirectResponse(_HOME[caller.person.role], status_code=303)


def _page(request: Request, caller: Caller, template: str, **context: object) -> Response:
    return _study(request).templates.TemplateResponse(
        request, template, {"person": caller.person, "csrf": caller.csrf, **context}
    )


@router.get("/screen")
def screen_page(request: Request, caller: Screener) -> Response:
    """The screener's page."""
    return _page(request, caller, "screen.html", shortcuts=SCREENER_SHORTCUTS,
                 viewer_help=VIEWER_HELP)  # fmt: skip


@router.get("/rate")
def rate_page(request: Request, caller: Rater) -> Response:
    """A rater's page."""
    return _page(request, caller, "rate.html", shortcuts=RATER_SHORTCUTS, segments=SEGMENTS,
                 scores=SCORES, viewer_help=VIEWER_HELP)  # fmt: skip


@router.get("/admin")
def admin_page(request: Request, caller: Admin) -> Response:
    """The admin's page: progress and downloads."""
    store = _study(request).store
    return _page(request, caller, "admin.html", progress=store.progress(),
                 screening_complete=store.screening_complete())  # fmt: skip


@router.get("/assets/{name}")
def asset(name: str, request: Request, caller: Anyone) -> Response:
    """A packaged JavaScript or CSS file, looked up by name in a fixed table."""
    found = _study(request).assets.get(name)
    if found is None:
        raise HTTPException(404, "no such asset")
    content, media_type = found
    return Response(content, media_type=media_type)


@router.get("/favicon.ico")
def favicon(caller: Anyone) -> Response:
    """No icon (answers the browser's automatic request without an error)."""
    return Response(status_code=204)


@router.get("/api/queue")
def queue(request: Request, caller: Reader) -> dict:
    """The caller's images in order and their own answers."""
    store, person = _study(request).store, caller.person
    if person.role == "screener":
        answers: dict = {i: {"keep": keep} for i, keep in store.screening_answers(person).items()}
    else:
        answers = {i: {"scores": a.scores, "external": a.external}
                   for i, a in store.rating_answers(person).items()}  # fmt: skip
    return {"images": store.queue(person), "answers": answers,
            "screening_complete": store.screening_complete()}  # fmt: skip


@router.get("/api/images/{image_id}")
def image(image_id: str, request: Request, caller: Reader) -> Response:
    """An image of the caller's queue, by its opaque id."""
    study = _study(request)
    if not is_public_id(image_id) or image_id not in study.store.queue(caller.person):
        raise HTTPException(404, "no such image in your queue")
    return FileResponse(study.images_dir / f"{image_id}.png", media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip


@router.post("/api/screening/{image_id}")
def post_screening(image_id: str, body: ScreeningBody, request: Request,
                   caller: ScreenerPost) -> dict:  # fmt: skip
    """Stores the screener's decision on one image."""
    _study(request).store.screen(caller.person, image_id, body.keep)
    return {"saved": True}


@router.post("/api/ratings/{image_id}")
def post_rating(image_id: str, body: RatingBody, request: Request, caller: RaterPost) -> dict:
    """Stores some of a rater's answers on one image."""
    _study(request).store.rate(caller.person, image_id, body.scores, body.external)
    return {"saved": True}


@router.get("/api/progress")
def progress(request: Request, caller: Admin) -> list[dict]:
    """Answered and total images per screener and rater."""
    return [{"name": p.person.name, "role": p.person.role, "done": p.done, "total": p.total}
            for p in _study(request).store.progress()]  # fmt: skip


def _csv(text: str, name: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@router.get("/admin/ratings.csv")
def ratings_csv(request: Request, caller: Admin) -> Response:
    """ratings.csv as `reader-study export` writes it."""
    return _csv(to_csv_text(ratings_table(_study(request).store)), "ratings.csv")


@router.get("/admin/screening.csv")
def screening_csv(request: Request, caller: Admin) -> Response:
    """screening.csv as `reader-study export` writes it."""
    return _csv(to_csv_text(screening_table(_study(request).store)), "screening.csv")


def _load_assets() -> dict[str, tuple[bytes, str]]:
    files = sorted((_PACKAGE / "static").iterdir())
    return {f.name: (f.read_bytes(), _MEDIA_TYPES[f.suffix]) for f in files
            if f.suffix in _MEDIA_TYPES}  # fmt: skip


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        return _study(request).templates.TemplateResponse(
            request, "error.html", {"status": error.status_code, "detail": error.detail},
            status_code=error.status_code,
        )  # fmt: skip
    return JSONResponse({"detail": error.detail}, status_code=error.status_code)


async def _invalid_answer(request: Request, error: InvalidAnswer) -> Response:
    return JSONResponse({"detail": str(error)}, status_code=422)


async def _unknown_image(request: Request, error: UnknownImage) -> Response:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def _security_headers(request: Request, call_next) -> Response:
    response = await call_next(request)
    response.headers.update(_SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


_SIGN_IN_PATH = re.compile(r"/s/[^/?\s]+")


class RedactTokens(logging.Filter):
    """Replaces the token of personal links (/s/<token>) in log records by "/s/[token]"."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redacts the record's arguments and message; keeps every record."""
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def _redact(text: str) -> str:
    return _SIGN_IN_PATH.sub("/s/[token]", text)


def uvicorn_log_config() -> dict:
    """uvicorn's logging configuration with the tokens of personal links redacted."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_tokens": {"()": RedactTokens}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact_tokens"]
    return config


def create_app(study_dir: Path, db_url: str | None = None) -> FastAPI:
    """The web app of one study folder (and database URL, when not STUDY/study.db).

    Raises:
        InputNotFoundError, StudyError: when the folder or database holds no study or the
            database cannot be read.
    """
    study_dir = Path(study_dir)
    store = StudyStore.open(study_dir, db_url)
    app = FastAPI(title="angiosynth reader study", docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    app.state.study = StudyApp(
        store=store,
        images_dir=study_dir / IMAGES_DIR,
        templates=Jinja2Templates(directory=_PACKAGE / "templates"),
        assets=_load_assets(),
    )
    app.include_router(router)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(InvalidAnswer, _invalid_answer)
    app.add_exception_handler(UnknownImage, _unknown_image)
    app.middleware("http")(_security_headers)
    return app
