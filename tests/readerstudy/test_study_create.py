"""`reader-study create`: importing images, stripping them, tokens, orders, refusals."""

from __future__ import annotations

import re
import struct

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import select
from study_testkit import SECRET_TEXT, build_study, person, vessel_image, write_samples
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.errors import OptionError
from angiosynth.readerstudy.schema import ImageRow
from angiosynth.readerstudy.storage import StudyStore, hash_token
from angiosynth.readerstudy.study import create_study

runner = CliRunner()
_LINK = re.compile(r"^\s+(screener|rater|admin)\s+(\S+): (http://\S+/s/(\S+))$", re.MULTILINE)


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order."""
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks.append(kind.decode("ascii"))
        at += 12 + length
    return chunks


@pytest.fixture(scope="module")
def created(tmp_path_factory):
    """`reader-study create` run once through the CLI: (samples table, study folder, output)."""
    root = tmp_path_factory.mktemp("create")
    samples = write_samples(root / "samples", n=8)
    result = runner.invoke(app, [
        "reader-study", "create", str(root / "samples"), "--screener", "sam",
        "--raters", "ann,bob", "--raters", "cid", "--out", str(root / "study"), "--seed", "3",
        "--base-url", "http://reader.example:9000/",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return samples, root / "study", result.output


def test_create_prints_one_personal_link_per_person(created) -> None:
    _, _, output = created
    links = _LINK.findall(output)

    assert [(role, name) for role, name, _, _ in links] == [
        ("screener", "sam"), ("rater", "ann"), ("rater", "bob"), ("rater", "cid"),
        ("admin", "admin")]  # fmt: skip
    assert all(link.startswith("http://reader.example:9000/s/") for _, _, link, _ in links)
    tokens = [token for *_, token in links]
    assert len(set(tokens)) == 5 and all(len(token) >= 40 for token in tokens)
    assert "8 images, 3 raters" in output


def test_tokens_are_stored_only_as_hashes(created) -> None:
    _, study, output = created
    tokens = [token for *_, token in _LINK.findall(output)]
    files = [path for path in study.rglob("*") if path.is_file()]

    assert {path.name for path in files} >= {"study.db", "study.json"}
    database = (study / "study.db").read_bytes()
    for token in tokens:
        for path in files:
            assert token.encode() not in path.read_bytes(), path
        assert hash_token(token).encode() in database


def test_images_are_stripped_and_named_by_opaque_ids(created) -> None:
    samples, study, _ = created
    images = sorted((study / "images").iterdir())

    assert len(images) == len(samples)
    assert all(re.fullmatch(r"[0-9a-f]{16}\.png", path.name) for path in images)
    source_names = {name.split("/")[-1] for name in samples["file"]}
    assert not source_names & {path.name for path in images}
    for path in images:
        data = path.read_bytes()
        assert SECRET_TEXT.encode() not in data
        assert set(png_chunks(data)) == {"IHDR", "IDAT", "IEND"}
        with Image.open(path) as image:
            assert image.mode == "L" and image.info == {}


def test_images_keep_their_pixels_and_metadata_stays_in_the_database(created) -> None:
    samples, study, _ = created
    store_images = _images_by_source(study)

    for row in samples.itertuples():
        public_id, condition, prompt = store_images[row.file]
        with Image.open(study / "images" / f"{public_id}.png") as image:
            np.testing.assert_array_equal(np.asarray(image), vessel_image_of(row.index, samples))
        assert (condition, prompt) == (row.condition, row.prompt)


def vessel_image_of(index: int, samples: pd.DataFrame) -> np.ndarray:
    """The pixels `write_samples` drew for image `index`."""
    contrast = 5 + 110 * index / (len(samples) - 1)
    return vessel_image(contrast, 32, seed=index)


def _images_by_source(study) -> dict[str, tuple[str, str, str]]:
    """Source file -> (public id, condition, prompt)."""
    store = StudyStore.open(study)
    try:
        with store.session() as session:
            rows = session.execute(select(ImageRow.source_file, ImageRow.public_id,
                                          ImageRow.condition, ImageRow.prompt))  # fmt: skip
            return {source: (public_id, c, p) for source, public_id, c, p in rows}
    finally:
        store.dispose()


def test_orders_are_seeded_and_differ_between_raters(tmp_path) -> None:
    first = build_study(tmp_path / "a", n=12, raters=("ann", "bob"), seed=5)
    second = build_study(tmp_path / "b", n=12, raters=("ann", "bob"), seed=5)
    other = build_study(tmp_path / "c", n=12, raters=("ann", "bob"), seed=6)

    orders = [_source_orders(study.root) for study in (first, second, other)]

    assert orders[0] == orders[1]
    assert orders[0]["ann"] != orders[0]["bob"] != orders[0]["sam"]
    assert orders[0] != orders[2]
    assert sorted(orders[0]["ann"]) == sorted(orders[0]["sam"])


def _source_orders(study) -> dict[str, list[str]]:
    """Each person's order as source file names (after keeping every image)."""
    by_id = {public_id: source for source, (public_id, _, _) in _images_by_source(study).items()}
    store = StudyStore.open(study)
    try:
        screener = person(store, "sam")
        for public_id in store.queue(screener):
            store.screen(screener, public_id, True)
        return {p.name: [by_id[i] for i in store.queue(p)] for p in store.persons()
                if p.role != "admin"}  # fmt: skip
    finally:
        store.dispose()


def test_any_folder_with_a_csv_table_and_16_bit_images(tmp_path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    wide = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257).astype(np.uint16)
    Image.fromarray(wide).save(folder / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "b.png")
    table = tmp_path / "meta.csv"
    pd.DataFrame({"file": ["a.png", "b.png"], "condition": ["AC A", "PC B"]}).to_csv(table)

    result = create_study(folder, tmp_path / "study", screener="s", raters=["r"],
                          metadata=table)  # fmt: skip

    assert result.images == 2
    images = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "study/images").iterdir())]
    assert sorted(image.dtype.name for image in images) == ["uint8", "uint8"]
    converted = next(image for image in images if image.shape == (16, 16))
    np.testing.assert_array_equal(converted, np.arange(256, dtype=np.uint8).reshape(16, 16))


def _cli(*args: str):
    return runner.invoke(app, ["reader-study", *args])


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_a_non_empty_study_folder_is_refused(tmp_path) -> None:
    write_samples(tmp_path / "samples", n=2)
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("keep me")

    result = _cli("create", str(tmp_path / "samples"), "--screener", "s", "--raters", "r",
                  "--out", str(tmp_path / "study"))  # fmt: skip

    assert "not empty" in _one_line_error(result)
    assert [p.name for p in (tmp_path / "study").iterdir()] == ["notes.txt"]


def test_an_empty_study_folder_is_used(tmp_path) -> None:
    write_samples(tmp_path / "samples", n=2)
    (tmp_path / "study").mkdir()

    create_study(tmp_path / "samples", tmp_path / "study", screener="s", raters=["r"])

    assert (tmp_path / "study" / "study.db").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.assign(file=t["file"].str.replace("00001", "99999")), "no such image"),
    (lambda t: t.drop(columns="condition"), "missing column(s) condition"),
    (lambda t: t.iloc[:1].assign(file="../outside.png"), "is not inside"),
    (lambda t: t.iloc[:0], "no images listed"),
    (lambda t: pd.concat([t, t.iloc[:1]]), "is listed twice"),
])  # fmt: skip
def test_bad_metadata_gives_one_line_errors_and_writes_nothing(tmp_path, change, message) -> None:
    table = write_samples(tmp_path / "samples", n=3)
    (tmp_path / "outside.png").write_bytes(b"")
    change(table).to_parquet(tmp_path / "samples" / "samples.parquet")

    result = _cli("create", str(tmp_path / "samples"), "--screener", "s", "--raters", "r",
                  "--out", str(tmp_path / "study"))  # fmt: skip

    assert message in _one_line_error(result)
    assert not (tmp_path / "study").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside.png", "samples"]


def test_unreadable_inputs_give_one_line_errors_and_write_nothing(tmp_path) -> None:
    table = write_samples(tmp_path / "samples", n=2)
    (tmp_path / "samples" / table["file"].iloc[1]).write_bytes(b"not a png")
    (tmp_path / "meta.parquet").write_bytes(b"not parquet")
    base = ["create", str(tmp_path / "samples"), "--screener", "s", "--raters", "r",
            "--out", str(tmp_path / "study")]  # fmt: skip

    image = _cli(*base)  # the error follows the progress bar of the import
    errors = [line for line in image.output.splitlines() if line.startswith("error: ")]
    assert image.exit_code == 2 and len(errors) == 1 and "unreadable image" in errors[0]
    bad_table = _one_line_error(_cli(*base, "--metadata", str(tmp_path / "meta.parquet")))
    assert "meta.parquet: unreadable metadata table" in bad_table
    assert not (tmp_path / "study").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_rater_names_are_checked(tmp_path) -> None:
    write_samples(tmp_path / "samples", n=2)
    base = ["create", str(tmp_path / "samples"), "--screener", "s", "--out", str(tmp_path / "x")]

    assert "named twice" in _one_line_error(_cli(*base, "--raters", "a,b", "--raters", "a"))
    assert "at least one rater" in _one_line_error(_cli(*base, "--raters", " , "))


@pytest.mark.parametrize(("option", "name"), [
    ("--screener", "sam\nrow2"), ("--screener", "x\u2028y"), ("--raters", "an\tn"),
    ("--raters", "bob\x1b[31m"), ("--raters", "cid\x00"), ("--raters", "da\x85n"),
])  # fmt: skip
def test_names_with_control_characters_are_refused(tmp_path, option, name) -> None:
    write_samples(tmp_path / "samples", n=2)
    names = {"--screener": "s", "--raters": "r", option: name}
    args = [arg for pair in names.items() for arg in pair]

    result = _cli("create", str(tmp_path / "samples"), *args, "--out", str(tmp_path / "study"))

    line = _one_line_error(result)
    assert line.startswith(f"error: {option}: ") and "control character" in line, line
    assert repr(name) in line
    assert not (tmp_path / "study").exists()
    with pytest.raises(OptionError, match="control character"):
        create_study(tmp_path / "samples", tmp_path / "study", screener="s", raters=["r", name])


def test_help_documents_the_commands(tmp_path) -> None:
    group = _cli("--help")
    create = _cli("create", "--help")
    export = _cli("export", "--help")

    for command in ("create", "serve", "export", "simulate", "analyze"):
        assert command in group.output
    for option in ("--screener", "--raters", "--out", "--metadata", "--seed", "--base-url"):
        assert option in create.output
    assert "commas" in create.output
    for column in ("image_id", "condition", "rater", "segment", "score", "external", "keep"):
        assert column in export.output


def test_a_database_url_keeps_the_database_outside_the_folder(tmp_path) -> None:
    write_samples(tmp_path / "samples", n=2)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"

    create_study(tmp_path / "samples", tmp_path / "study", screener="s", raters=["r"], db_url=url)
    store = StudyStore.open(tmp_path / "study", url)
    names = [p.name for p in store.persons()]
    store.dispose()

    assert names == ["s", "r", "admin"]
    assert not (tmp_path / "study" / "study.db").exists()
    assert "not recorded" in (tmp_path / "study" / "study.json").read_text()
    with pytest.raises(FileExistsError, match="already holds a study"):
        create_study(tmp_path / "samples", tmp_path / "again", screener="s", raters=["r"],
                     db_url=url)  # fmt: skip
    assert not (tmp_path / "again").exists()
