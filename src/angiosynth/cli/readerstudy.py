"""`angiosynth reader-study`: create, serve, export, simulate and analyse a blinded expert reader
study, and list, revoke or reissue its personal links."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from angiosynth.cli._common import one_line_errors, progress_bar
from angiosynth.errors import OptionError

app = typer.Typer(
    help="Expert reader study (paper §2.4): a screener keeps or discards each synthetic image, "
    "then blinded raters score three arterial segments per image in a local web app.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)

_DB_HELP = ("SQLAlchemy URL of the database (sqlite:///... or postgresql://...) "
            "[default: STUDY/study.db, SQLite in WAL mode].")  # fmt: skip
_BASE_URL_HELP = "Address the server will be reached at, for the links."
_EXPIRES_WHEN = ("after this many days, or at this ISO date (00:00 UTC) or date and time (UTC "
                 "unless an offset is given) [default: never].")  # fmt: skip


def _rater_names(values: list[str]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@app.command("create")
@one_line_errors
def create_command(
    samples: Path = typer.Argument(..., file_okay=False,
                                   help="Folder of `angiosynth sample --design reader-study` "
                                   "(with samples.parquet), or any folder with --metadata."),
    screener: str = typer.Option(..., "--screener", help="Name of the screening reader."),
    raters: list[str] = typer.Option(..., "--raters", "--rater",
                                     help="Rater names: repeat the option (--raters A --raters "
                                     "B) or separate names by commas (--raters A,B)."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False,
                             help="Study folder to write (new or empty)."),
    metadata: Path = typer.Option(None, "--metadata", dir_okay=False,
                                  help="CSV or Parquet table with file (relative to SAMPLES) "
                                  "and condition columns [default: SAMPLES/samples.parquet]."),
    seed: int = typer.Option(0, "--seed", help="Seed of each person's random image order."),
    base_url: str = typer.Option("http://127.0.0.1:8000", "--base-url", help=_BASE_URL_HELP),
    expires: str = typer.Option(None, "--expires", metavar="DAYS|DATE",
                                help="The links stop working " + _EXPIRES_WHEN),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
) -> None:  # fmt: skip
    """Create a study: import the images, draw each person's order, print personal links.

    The images are re-encoded as plain 8-bit grayscale PNG (no metadata chunks) under opaque
    random ids; conditions, prompts and file names stay in the database, never shown to
    raters. One token per person (screener, each rater, admin) from `secrets.token_urlsafe`;
    only SHA-256 hashes are stored, so the links are printed **once**: send each person their
    own (a lost link is replaced with `links --reissue`). Names must not hold control
    characters (line breaks, tabs). A non-empty OUT is refused.
    """
    from angiosynth.readerstudy.study import create_study, describe_time, parse_expiry

    names = _rater_names(raters)
    expires_at = None if expires is None else parse_expiry(expires)
    created = create_study(samples, out, screener=screener, raters=names, metadata=metadata,
                           seed=seed, db_url=db, expires_at=expires_at,
                           progress=progress_bar)  # fmt: skip
    typer.echo(f"study: {created.study_dir} ({created.images} images, {len(names)} raters)")
    until = "" if expires_at is None else f"; they expire {describe_time(expires_at)}"
    typer.echo(f"personal links (shown once; only their hashes are stored{until}):")
    for invitation in created.invitations:
        typer.echo(f"  {invitation.role:8s} {invitation.name}: {invitation.link(base_url)}")


@app.command("serve")
@one_line_errors
def serve_command(
    study: Path = typer.Argument(..., file_okay=False, help="Study folder (`create`)."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind; anything but loopback exposes the study to "
                             "the network."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    public_url: str = typer.Option(None, "--public-url",
                                   help="Address the browsers open when a reverse proxy is in "
                                   "front (https://study.example.org): answers must come from "
                                   "it, only its host is answered, cookies are Secure on "
                                   "https."),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
) -> None:  # fmt: skip
    """Serve the study's web app (screening, rating, admin pages) with uvicorn.

    Each person opens their personal link, which stores their token in a cookie (one person
    per browser profile: opening someone else's link shows who is signed in and asks before
    switching). Every answer is committed when given, so stopping the server loses nothing
    already answered. Raters see the images the screener has kept so far, each in their own
    seeded order; keyboard shortcuts are listed on the pages.

    Behind a reverse proxy (HTTPS), pass the address the browsers open as --public-url.
    Request bodies over 16 KiB get 413, and a connection that has not sent a whole request
    10 s after it opened (or after its previous answer) is closed.
    """
    import uvicorn

    from angiosynth.readerstudy.app import create_app
    from angiosynth.readerstudy.server import uvicorn_settings

    web_app = create_app(study, db, public_url=public_url)
    if not _is_loopback(host):
        typer.secho(f"warning: binding to {host}: the study is reachable from the network; "
                    "use HTTPS (a reverse proxy) beyond a trusted network",
                    fg=typer.colors.YELLOW, err=True)  # fmt: skip
    if public_url is not None and web_app.state.study.public_origin.startswith("http://"):
        typer.secho(f"warning: {public_url} is not https: links and answers cross the network "
                    "unencrypted", fg=typer.colors.YELLOW, err=True)  # fmt: skip
    uvicorn.run(web_app, host=host, port=port, log_level="info", **uvicorn_settings())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("links")
@one_line_errors
def links_command(
    study: Path = typer.Argument(..., file_okay=False, help="Study folder (`create`)."),
    reissue: str = typer.Option(None, "--reissue", metavar="NAME",
                                help="Print a new personal link for NAME; the old link stops "
                                "working at once, also in a running server."),
    revoke: str = typer.Option(None, "--revoke", metavar="NAME",
                               help="Disable NAME's link at once, also in a running server."),
    role: str = typer.Option(None, "--role", metavar="ROLE",
                             help="screener, rater or admin: which NAME is meant, when two people "
                             "share it (the screener and a rater)."),
    expires: str = typer.Option(None, "--expires", metavar="DAYS|DATE",
                                help="With --reissue: the new link stops working "
                                + _EXPIRES_WHEN),
    base_url: str = typer.Option("http://127.0.0.1:8000", "--base-url", help=_BASE_URL_HELP),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
) -> None:  # fmt: skip
    """List everyone's personal link and its state, or revoke or reissue one person's link.

    Without options, prints each person's role, name and whether their link is active
    (issued when, expiring when), revoked or expired; the links themselves cannot be shown
    again (only their hashes are stored). **--revoke NAME** disables the link at once: the
    next request with it, even in a server that is already running, is refused.
    **--reissue NAME** prints a new link, **once**, and the old one stops working at once; it
    also lifts a revocation. Either way the person stays the same: their queue and answers are
    kept, and a reissued link resumes where they were.
    """
    from angiosynth.readerstudy.storage import StudyStore
    from angiosynth.readerstudy.study import parse_expiry, person_named, reissue_link

    if reissue is not None and revoke is not None:
        raise OptionError("give --revoke or --reissue, not both")
    if expires is not None and reissue is None:
        raise OptionError("--expires goes with --reissue (or with create)")
    expires_at = None if expires is None else parse_expiry(expires)
    store = StudyStore.open(study, db)
    try:
        if revoke is not None:
            person = person_named(store, revoke, role, "--revoke")
            store.revoke(person)
            typer.echo(f"revoked the link of {person.role} {person.name}: it stops working at "
                       f"once; their answers are kept (--reissue gives a new link)")  # fmt: skip
        elif reissue is not None:
            person = person_named(store, reissue, role, "--reissue")
            invitation = reissue_link(store, person, expires_at)
            typer.echo(f"new personal link (shown once; the old link no longer works; answers "
                       f"are kept; {_expiry(expires_at)}):")  # fmt: skip
            typer.echo(f"  {person.role:8s} {person.name}: {invitation.link(base_url)}")
        else:
            typer.echo(f"personal links of {study}:")
            for link in store.links():
                typer.echo(f"  {link.person.role:8s} {link.person.name}: {_link_state(link)}")
    finally:
        store.dispose()


def _expiry(expires_at) -> str:
    from angiosynth.readerstudy.study import describe_time

    return "no expiry" if expires_at is None else f"expires {describe_time(expires_at)}"


def _link_state(link) -> str:
    from angiosynth.readerstudy.study import describe_time

    state = link.state()
    if state == "revoked":
        return f"revoked {describe_time(link.revoked_at)} (answers kept; --reissue for a new link)"
    if state == "expired":
        return f"expired {describe_time(link.expires_at)} (--reissue for a new link)"
    return f"active, issued {describe_time(link.issued_at)}, {_expiry(link.expires_at)}"


@app.command("export")
@one_line_errors
def export_command(
    study: Path = typer.Argument(..., file_okay=False, help="Study folder."),
    out: Path = typer.Option(..., "--out", "-o", dir_okay=False,
                             help="ratings.csv to write; screening.csv is written beside it."),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
) -> None:  # fmt: skip
    """Export the answers as ratings.csv (long format) and screening.csv beside it.

    **ratings.csv**, one row per image x rater x segment answered (kept images only):
    `image_id` (opaque id), `condition` ("AC A", "PC A", "AC B", "PC B"), `rater` (name),
    `segment` (proximal, medium, peripheral), `score` (1-5, NP not present, NA not
    applicable), `external` (1 when the rater flagged external circulation on the image, else
    0; repeated on the image's three rows).

    **screening.csv**, one row per decided image: `image_id`, `condition`, `keep` (1 kept,
    0 discarded).

    Both are written under a temporary name and renamed into place. Ratings collected
    elsewhere in these columns can be analysed by `reader-study analyze` too.
    """
    from angiosynth.readerstudy.export import export_study
    from angiosynth.readerstudy.storage import StudyStore

    store = StudyStore.open(study, db)
    try:
        ratings, screening = export_study(store, out)
    finally:
        store.dispose()
    typer.echo(f"ratings: {ratings}")
    typer.echo(f"screening: {screening}")


@app.command("simulate")
@one_line_errors
def simulate_command(
    study: Path = typer.Argument(..., file_okay=False, help="Study folder (without answers)."),
    raters: int = typer.Option(..., "--raters", min=1,
                               help="Fill the first K raters of the study."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated answers."),
    db: str = typer.Option(None, "--db", help=_DB_HELP),
) -> None:  # fmt: skip
    """Fill an empty study with simulated answers: screening first, then the first K raters.

    Scores follow image quality measured from the pixels (sharpness and vessel contrast,
    standardised) plus a seeded image effect N(0, 0.4); the screener keeps the best 60 %
    after noise N(0, 0.5); each rater has a bias N(0, 0.3) and noise N(0, 0.6); segment
    offsets +0.4 / 0 / -0.4 (proximal / medium / peripheral) around 3.2, rounded and clipped to
    1-5; NP and NA now and then (most often peripheral); external circulation rare. The same
    study and seed give the same answers.
    """
    from angiosynth.readerstudy.simulate import simulate_study
    from angiosynth.readerstudy.storage import IMAGES_DIR, StudyStore

    store = StudyStore.open(study, db)
    try:
        summary = simulate_study(store, study / IMAGES_DIR, raters=raters, seed=seed,
                                 progress=progress_bar)  # fmt: skip
    finally:
        store.dispose()
    typer.echo(f"screened {summary.images} images, kept {summary.kept}; "
               f"{summary.ratings} segment ratings by {', '.join(summary.raters)}")  # fmt: skip


from angiosynth.cli.readerstudy_analysis import analyze_command  # noqa: E402

app.command("analyze")(analyze_command)
