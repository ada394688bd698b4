"""The reader-study web app: FastAPI, Jinja2 templates and plain JavaScript, all served locally.

Routes (every one checks the caller's token and role; errors answer 4xx with {"detail": ...}):

    GET  /s/{token}                  personal link: stores the token in an HttpOnly, SameSite=Lax
                                     cookie and redirects to the person's page; when the browser
                                     is signed in as someone else, a page naming both asks first
    POST /s/{token}                  that page's button (form field csrf): switches the person
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

Each request's token is looked up by its SHA-256 hash in the study's database (no cache, so a
revoked or reissued link stops at once; `storage.StudyStore.authenticate`). Every POST needs the
header X-CSRF-Token, HMAC-SHA256(token, "angiosynth csrf") in hex, which the server renders into
the person's page (the switch form sends it as a field); a POST with an Origin header other than
the server's own (the public URL's, when given), or marked Sec-Fetch-Site: cross-site, is
refused. The token, role and CSRF token are checked before a body is read; bodies over
`server.MAX_BODY_BYTES` get 413, JSON bodies are parsed without NaN or Infinity (422 with a one-line
message), and every answer, a 500 included, carries the security headers. With a public URL,
only its host (and LOOPBACK_HOSTS) are answered and cookies are Secure when it is https. Raters
see only opaque ids and their own answers, never a condition, prompt, file name or anyone
else's answers. `server.uvicorn_settings` runs uvicorn with TimedH11Protocol (a connection that does
not send a whole request within REQUEST_TIMEOUT_S is closed) and keeps the tokens of personal
links out of the access log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from angiosynth.readerstudy.export import ratings_table, screening_table, to_csv_text
from angiosynth.readerstudy.schema import SCORES, SEGMENTS
from angiosynth.readerstudy.server import (
    LOOPBACK_HOSTS,
    BodyLimit,
    SecurityHeaders,
    add_security_headers,
    host_header,
    public_origin,
)
from angiosynth.readerstudy.storage import (
    IMAGES_DIR,
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
    """What the routes need: the store, the image folder, templates, assets and the public
    origin (scheme://host[:port] the browsers see; None: the request's own)."""

    store: StudyStore
    images_dir: Path
    templates: Jinja2Templates
    assets: dict[str, tuple[bytes, str]]
    public_origin: str | None = None


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


def _cookie_caller(request: Request) -> Caller | None:
    """The person of the request's cookie, if it holds a known token."""
    token = request.cookies.get(COOKIE_NAME)
    person = _study(request).store.authenticate(token) if token else None
    return None if person is None else Caller(person, token)


def _caller(request: Request) -> Caller:
    if not request.cookies.get(COOKIE_NAME):
        raise HTTPException(401, "no token: open your personal link")
    caller = _cookie_caller(request)
    if caller is None:
        raise HTTPException(401, "unknown token: open your personal link")
    return caller


def _role(*roles: str):
    def dependency(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        if caller.person.role not in roles:
            raise HTTPException(403, f"not allowed for a {caller.person.role}")
        return caller

    return dependency


def _origin(request: Request) -> str:
    """The origin the browsers see: the public URL's, else the request's own."""
    public = _study(request).public_origin
    return public or f"{request.url.scheme}://{request.url.netloc}"


def _same_origin(request: Request) -> None:
    """Refuses a POST from another origin. "Origin: null" passes only with Sec-Fetch-Site:
    same-origin: what browsers send for a form of our own pages (Referrer-Policy: no-referrer
    hides the origin of form posts)."""
    origin, site = request.headers.get("origin"), request.headers.get("sec-fetch-site")
    hidden = origin == "null" and site == "same-origin"
    if origin is not None and origin != _origin(request) and not hidden:
        raise HTTPException(403, "cross-origin request refused")
    if site == "cross-site":
        raise HTTPException(403, "cross-site request refused")


def _check_csrf(sent: str, caller: Caller, where: str) -> None:
    if not hmac.compare_digest(sent.encode("utf-8"), caller.csrf.encode("ascii")):
        raise HTTPException(403, f"missing or wrong CSRF token ({where})")


def _same_origin_with_csrf(request: Request, caller: Caller) -> None:
    _same_origin(request)
    _check_csrf(request.headers.get(CSRF_HEADER, ""), caller, f"the {CSRF_HEADER} header")


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
Body = TypeVar("Body", bound=BaseModel)


async def _body(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect:
        raise HTTPException(400, "the request ended before its body did") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is beyond the range of numbers")
    return number


def _parse_json(raw: bytes) -> object:
    """JSON as FastAPI parses it (`json.loads`), but NaN, Infinity and numbers beyond a float
    refused (422), so that no error message holds a value JSON cannot write."""
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as error:  # also bad UTF-8 and too long integers
        raise HTTPException(422, f"the body is not valid JSON: {error}") from None


def _first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


async def _json_body(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as `model`: 415 unless sent as JSON, 422 with a one-line
    message when it is not valid JSON or does not fit the model."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(415, "send the answer as JSON (Content-Type: application/json)")
    data = _parse_json(await _body(request))
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise HTTPException(422, _first_problem(error)) from None


async def _screening_answer(request: Request, caller: ScreenerPost) -> ScreeningBody:
    """The screening answer, read only once the caller's token, role and CSRF token passed
    (a body parameter would be read and parsed before any dependency runs)."""
    return await _json_body(request, ScreeningBody)


async def _rating_answer(request: Request, caller: RaterPost) -> RatingBody:
    """The rating answer, read only once the caller's token, role and CSRF token passed."""
    return await _json_body(request, RatingBody)


async def _switch_form(request: Request, caller: Anyone) -> Caller:
    """The caller who sent the confirmation page's form, once its origin and CSRF field (the
    signed-in person's token) passed."""
    _same_origin(request)
    form = parse_qs((await _body(request)).decode("latin-1"))
    _check_csrf(form.get("csrf", [""])[0], caller, "the form's csrf field")
    return caller


ScreeningAnswer = Annotated[ScreeningBody, Depends(_screening_answer)]
RatingAnswer = Annotated[RatingBody, Depends(_rating_answer)]
SwitchForm = Annotated[Caller, Depends(_switch_form)]

router = APIRouter()


def _link_person(request: Request, token: str) -> Person:
    person = _study(request).store.authenticate(token)
    if person is None:
        raise HTTPException(401, "unknown token: check your personal link")
    return person


def _signed_in(request: Request, token: str, person: Person) -> Response:
    """The cookie set to `token` (Secure when the origin is https) and a redirect to the
    person's page."""
    response = RedirectResponse(_HOME[person.role], status_code=303)
    response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="lax", path="/",
                        secure=_origin(request).startswith("https://"))  # fmt: skip
    return response


@router.get("/s/{token}")
def sign_in(token: str, request: Request) -> Response:
    """Stores a personal token in the cookie and goes to the person's page; when the browser
    is signed in as someone else, asks first (a page naming both, with a button)."""
    person = _link_person(request, token)
    current = _cookie_caller(request)
    if current is not None and current.person != person:
        return _page(request, current, "switch.html", link_person=person, token=token)
    return _signed_in(request, token, person)


@router.post("/s/{token}")
def switch_person(token: str, request: Request, caller: SwitchForm) -> Response:
    """The confirmation page's button: signs the browser in as the link's person."""
    return _signed_in(request, token, _link_person(request, token))


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
def post_screening(image_id: str, body: ScreeningAnswer, request: Request,
                   caller: ScreenerPost) -> dict:  # fmt: skip
    """Stores the screener's decision on one image."""
    _study(request).store.screen(caller.person, image_id, body.keep)
    return {"saved": True}


@router.post("/api/ratings/{image_id}")
def post_rating(image_id: str, body: RatingAnswer, request: Request, caller: RaterPost) -> dict:
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
    if "text/html" in request.headers.get("accept", ""):
        return _study(request).templates.TemplateResponse(
            request, "error.html", {"status": error.status_code, "detail": error.detail},
            status_code=error.status_code, headers=error.headers,
        )  # fmt: skip
    return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                        headers=error.headers)  # fmt: skip


async def _invalid_answer(request: Request, error: InvalidAnswer) -> Response:
    return JSONResponse({"detail": str(error)}, status_code=422)


async def _unknown_image(request: Request, error: UnknownImage) -> Response:
    return JSONResponse({"detail": str(error)}, status_code=404)


async def _internal_error(request: Request, error: Exception) -> Response:
    """A bug: 500 with the security headers (Starlette's ServerErrorMiddleware sends it, outside
    every other middleware, and logs the traceback)."""
    response = JSONResponse({"detail": "internal server error"}, status_code=500)
    add_security_headers(response.headers)
    return response


def create_app(study_dir: Path, db_url: str | None = None,
               public_url: str | None = None) -> FastAPI:  # fmt: skip
    """The web app of one study folder (and database URL, when not STUDY/study.db).

    With `public_url` (what the browsers open, e.g. behind a reverse proxy), POSTs must come
    from its origin, only its host (and LOOPBACK_HOSTS) are answered, and cookies are Secure
    when it is https.

    Raises:
        InputNotFoundError, StudyError: when the folder or database holds no study or the
            database cannot be read.
        OptionError: when `public_url` is not an http(s) origin.
    """
    study_dir = Path(study_dir)
    origin = None if public_url is None else public_origin(public_url)
    store = StudyStore.open(study_dir, db_url)
    app = FastAPI(title="angiosynth reader study", docs_url=None, redoc_url=None,
                  openapi_url=None, redirect_slashes=False)  # fmt: skip
    app.state.study = StudyApp(
        store=store,
        images_dir=study_dir / IMAGES_DIR,
        templates=Jinja2Templates(directory=_PACKAGE / "templates"),
        assets=_load_assets(),
        public_origin=origin,
    )
    app.include_router(router)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(InvalidAnswer, _invalid_answer)
    app.add_exception_handler(UnknownImage, _unknown_image)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(BodyLimit)
    if origin is not None:
        allowed = [host_header(urlsplit(origin).hostname), *LOOPBACK_HOSTS]
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed, www_redirect=False)
    app.add_middleware(SecurityHeaders)
    return app
