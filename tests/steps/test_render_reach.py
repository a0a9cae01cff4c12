"""What a render step may read: only its template folders, never other files or the network.

``render.pdf`` loads the files of the template_dir and the built-in templates only (WeasyPrint's URL
fetcher, Chromium's requests: both engines are tested; tests/steps/test_render_chromium.py has more of
Chromium's); a ``template_dir`` stays inside the policy's folder unless ``[render]
allowed_template_dirs`` names it, and never reaches the engine's state directory.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pypdf
import pytest

from engine import EngineConfig, PolicyError
from engine.validate import validate_document
from tests.steps.test_render_fonts import pdf_fonts
from tests.steps.test_render_sections import BOTH_ENGINES, html_of, output, report_policy

SECRET = b"TOP-SECRET-7f3a9c"
PNG = base64.b64decode(  # a 1 x 1 red pixel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
BUILTIN_FONTS = Path(__file__).resolve().parents[2] / "templates" / "fonts"


def base_html(head: str = "", body: str = "") -> str:
    """A base.html of a template_dir: the report's title, and whatever the test puts around it."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{{ report.title }}</title>\n'
        f"{head}\n</head><body>{body}<h1>{{{{ report.title }}}}</h1></body></html>\n"
    )


def tpl(tmp_path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    folder = tmp_path / "tpl"
    folder.mkdir(exist_ok=True)
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def pdf_policy(template_dir: object = "tpl", kind: str = "pdf", body: str = "Body", engine: str | None = None) -> dict:
    sections = [{"type": "text", "body": body}]
    return report_policy(sections, render=(kind,), render_params={"template_dir": template_dir}, engine=engine)


def error_of(result, step="pdf"):
    (found,) = [s for s in result.steps if s.id == step]
    return found.error


def stored_files(state_dir: Path) -> list[Path]:
    return [p for p in (state_dir / "artifacts").rglob("*") if p.is_file()]


def refused(url: str, folder: Path) -> str:
    return (
        f"render.pdf at /steps/2: the template asks for {url}, outside the template folders "
        f"({folder.resolve()}, built-in templates); only files inside them and data: URLs can be used, "
        "nothing is fetched from the network"
    )


def test_a_template_cannot_embed_other_files_or_fetch_from_the_network(run, state_dir, tmp_path, server, monkeypatch):
    # WeasyPrint's attachments (Chromium's own vectors: test_render_chromium.py)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    (tmp_path / "outside.png").write_bytes(PNG)
    head = f'<link rel="attachment" href="file://localhost{secret}">\n<link rel="stylesheet" href="{server.url}/x.css">'
    folder = tpl(tmp_path, {"base.html": base_html(head, '<img src="../outside.png">')})
    # the old check read file://localhost/ABS as the relative path localhost/ABS: it passed when the
    # working directory was inside a template folder other than the first
    monkeypatch.chdir(BUILTIN_FONTS.parent)
    result = run(pdf_policy(engine="weasyprint"))
    assert result.status == "FAILED"
    urls = sorted([f"{server.url}/x.css", (tmp_path / "outside.png").resolve().as_uri(), f"file://localhost{secret}"])
    assert error_of(result) == (
        f"render.pdf at /steps/2: the template asks for {', '.join(urls)}, outside the template folders "
        f"({folder.resolve()}, built-in templates); only files inside them and data: URLs can be used, "
        "nothing is fetched from the network"
    )
    assert [s.path for s in server.seen] == []  # nothing was asked of the network
    files = stored_files(state_dir)
    assert all(SECRET not in p.read_bytes() for p in files)
    for pdf in (p for p in files if p.read_bytes().startswith(b"%PDF")):
        assert pypdf.PdfReader(pdf).attachments == {}


def _symlinked(tmp_path: Path) -> str:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "notes.txt").symlink_to(tmp_path / "secret.txt")
    return "notes.txt"


@pytest.mark.parametrize(
    "href",
    [
        lambda tmp: f"file://{tmp / 'secret.txt'}",
        lambda tmp: f"file://localhost{tmp / 'secret.txt'}",
        lambda tmp: "../secret.txt",
        lambda tmp: "fonts/../../secret.txt",
        _symlinked,
    ],
    ids=["file-url", "file-localhost", "dot-dot", "dot-dot-after-a-folder", "symlink-out"],
)
@BOTH_ENGINES
def test_every_way_of_writing_a_file_outside_the_folders_is_refused(run, state_dir, tmp_path, href, engine):
    (tmp_path / "secret.txt").write_bytes(SECRET)
    written = href(tmp_path)
    # what each engine loads: WeasyPrint embeds an attachment's file in the PDF, Chromium draws an image
    element = {"weasyprint": '<link rel="attachment" href="{}">', "chromium": '<img src="{}">'}[engine]
    folder = tpl(tmp_path, {"base.html": base_html(element.format(written))})
    result = run(pdf_policy(engine=engine))
    assert result.status == "FAILED"
    url = written if written.startswith("file:") else f"{(folder / written).absolute().as_uri()}"
    if written.startswith("fonts/") or written.startswith(".."):
        url = (tmp_path / "secret.txt").resolve().as_uri()
    assert error_of(result) == refused(url, folder)
    assert all(SECRET not in p.read_bytes() for p in stored_files(state_dir))


@BOTH_ENGINES
def test_a_link_in_a_text_sections_markdown_is_refused_too(run, tmp_path, engine):
    (tmp_path / "outside.png").write_bytes(PNG)
    folder = tpl(tmp_path)
    result = run(pdf_policy(body="![logo](../outside.png)", engine=engine))
    assert error_of(result) == refused((tmp_path / "outside.png").resolve().as_uri(), folder)


def test_a_templates_own_css_image_font_and_attachment_are_used(run, store, tmp_path):
    # WeasyPrint's attachments (Chromium's: test_render_chromium.py)
    head = (
        '<link rel="attachment" href="notes.txt" title="Notes">\n'
        '<link rel="stylesheet" href="css/extra.css">\n'
        "<style>@font-face { font-family: Mine; src: url(fonts/mine.ttf); } h1 { font-family: Mine; }</style>"
    )
    files = {
        "base.html": base_html(head, '<img src="logo.png" alt="logo">'),
        "css/extra.css": "h1 { color: rgb(200, 0, 0); }",
        "logo.png": PNG,
        "notes.txt": "our notes",
        "fonts/mine.ttf": (BUILTIN_FONTS / "LiberationMono-Regular.ttf").read_bytes(),
    }
    tpl(tmp_path, files)
    result = run(pdf_policy(engine="weasyprint"))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    reader = pypdf.PdfReader(output(store, result, "pdf")["pdf"]["path"])
    assert reader.attachments == {"notes.txt": [b"our notes"]}
    assert [image.image.size for image in reader.pages[0].images] == [(1, 1)]
    assert pdf_fonts(reader)["MineBold"] == ["Test report"]  # the h1, in the template_dir's font


def test_a_relative_url_not_in_the_template_dir_is_found_in_the_builtin_folder(run, store, tmp_path):
    tpl(tmp_path, {"base.html": base_html('<link rel="attachment" href="fonts/LICENSE-OFL.txt">')})
    result = run(pdf_policy(engine="weasyprint"))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    reader = pypdf.PdfReader(output(store, result, "pdf")["pdf"]["path"])
    assert reader.attachments == {"LICENSE-OFL.txt": [(BUILTIN_FONTS / "LICENSE-OFL.txt").read_bytes()]}


def test_a_template_that_links_out_of_its_folder_is_refused(run, store, tmp_path):
    (tmp_path / "secret.txt").write_bytes(SECRET)
    folder = tpl(tmp_path)
    (folder / "sections").mkdir()
    (folder / "sections" / "text.html").symlink_to(tmp_path / "secret.txt")
    result = run(pdf_policy(kind="html"))
    assert result.status == "FAILED"
    assert error_of(result, "html") == (
        f"template 'sections/text.html' in {folder.resolve()} is a link to {(tmp_path / 'secret.txt').resolve()}, "
        "outside the template folder; only files inside it can be used"
    )


# template_dir: inside the policy's folder, or in [render] allowed_template_dirs; never the state directory


def problems(document, config=None, policy_dir=None):
    with pytest.raises(PolicyError) as info:
        validate_document(document, path=policy_dir, config=config or EngineConfig({}, environ={}))
    return [str(p) for p in info.value.problems]


def test_an_absolute_template_dir_fails_validation(tmp_path):
    folder = tpl(tmp_path)
    assert problems(pdf_policy(str(folder)), policy_dir=tmp_path / "policy.json") == [
        f"/steps/2/params/template_dir: template_dir {str(folder)!r} is an absolute path outside the folders "
        "the engine configuration allows ([render] allowed_template_dirs: none set) (write it relative to the "
        "policy file, or add the folder to [render] allowed_template_dirs in the engine configuration)"
    ]


def test_a_template_dir_that_climbs_out_of_the_policy_folder_fails_validation(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "policies").mkdir()
    assert problems(pdf_policy("../shared"), policy_dir=tmp_path / "policies" / "policy.json") == [
        f"/steps/2/params/template_dir: template_dir '../shared' ({(tmp_path / 'shared').resolve()}) is outside "
        f"the policy's folder ({(tmp_path / 'policies').resolve()}) and the folders the engine configuration "
        "allows ([render] allowed_template_dirs: none set) (write it relative to the policy file, or add the "
        "folder to [render] allowed_template_dirs in the engine configuration)"
    ]


def test_a_symlink_out_of_the_policy_folder_fails_validation(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "tpl").symlink_to(tmp_path / "elsewhere")
    (problem,) = problems(pdf_policy("tpl"), policy_dir=tmp_path / "policies" / "policy.json")
    assert problem.startswith(
        f"/steps/2/params/template_dir: template_dir 'tpl' ({(tmp_path / 'elsewhere').resolve()}) is outside "
    )


def test_allowed_template_dirs_let_a_policy_name_a_shared_folder(tmp_path):
    shared = tmp_path / "shared"
    (shared / "acme").mkdir(parents=True)
    (tmp_path / "policies").mkdir()
    path = tmp_path / "policies" / "policy.json"
    config = EngineConfig({"render": {"allowed_template_dirs": [str(shared)]}}, environ={})
    validate_document(pdf_policy(str(shared / "acme")), path=path, config=config)
    validate_document(pdf_policy("../shared/acme"), path=path, config=config)
    env = EngineConfig({}, environ={"ENGINE_RENDER_ALLOWED_TEMPLATE_DIRS": json.dumps([str(shared)])})
    validate_document(pdf_policy(str(shared)), path=path, config=env)
    (problem,) = problems(pdf_policy(str(tmp_path)), config, policy_dir=path)
    assert f"([render] allowed_template_dirs: {shared})" in problem


def test_a_relative_allowed_template_dir_is_a_configuration_error(tmp_path):
    from engine import ConfigError

    config = EngineConfig({"render": {"allowed_template_dirs": ["shared"]}}, environ={})
    with pytest.raises(ConfigError) as info:
        validate_document(pdf_policy("/srv/shared"), path=tmp_path / "policy.json", config=config)
    assert str(info.value) == (
        "engine config [render] (or ENGINE_RENDER_* variables): allowed_template_dirs: 'shared' is not an "
        "absolute path; list absolute folders, e.g. ['/srv/report-templates']"
    )


def test_the_state_directory_is_never_a_template_dir(tmp_path, monkeypatch):
    state = tmp_path / "state"
    (state / "artifacts").mkdir(parents=True)
    monkeypatch.setenv("ENGINE_STATE_DIR", str(state))
    config = EngineConfig({"render": {"allowed_template_dirs": [str(tmp_path)]}}, environ={})
    path = tmp_path / "policy.json"
    assert problems(pdf_policy("state/artifacts"), config, policy_dir=path) == [
        f"/steps/2/params/template_dir: template_dir 'state/artifacts' ({(state / 'artifacts').resolve()}) is "
        f"inside the engine's state directory ({state.resolve()}) (keep templates in a folder of their own)"
    ]
    assert problems(pdf_policy("."), config, policy_dir=path) == [
        f"/steps/2/params/template_dir: template_dir '.' ({tmp_path.resolve()}) holds the engine's state "
        f"directory ({state.resolve()}) (keep templates in a folder of their own)"
    ]


def test_a_template_dir_from_a_ref_is_checked_when_the_step_runs(run, store, tmp_path):
    folder = tpl(tmp_path, {"report.css": "h1 { color: navy; }"})
    doc = pdf_policy({"ref": "ctx.where"})
    doc["steps"].insert(0, {"id": "where", "type": "core.value", "params": {"value": str(folder)}})
    result = run(doc)
    assert result.status == "FAILED"
    assert error_of(result) == (
        f"template_dir {str(folder)!r} is an absolute path outside the folders the engine configuration allows "
        "([render] allowed_template_dirs: none set) at /steps/3/params/template_dir; write it relative to the "
        "policy file, or add the folder to [render] allowed_template_dirs in the engine configuration"
    )


def test_the_runs_state_directory_is_refused_when_the_step_runs(run, store, tmp_path, monkeypatch):
    # the store's state directory is tmp_path/state, inside the policy's folder
    monkeypatch.setenv("ENGINE_RENDER_ALLOWED_TEMPLATE_DIRS", json.dumps([str(tmp_path)]))
    doc = pdf_policy({"ref": "ctx.where"})
    doc["steps"].insert(0, {"id": "where", "type": "core.value", "params": {"value": "state"}})
    result = run(doc)
    assert error_of(result) == (
        f"template_dir 'state' ({(tmp_path / 'state').resolve()}) is inside the engine's state directory "
        f"({(tmp_path / 'state').resolve()}) at /steps/3/params/template_dir; keep templates in a folder of their own"
    )


def test_a_relative_template_dir_inside_the_policy_folder_still_works(run, store, tmp_path):
    tpl(tmp_path, {"sections/text.html": "<p class=mine>{{ section.html }}</p>\n"})
    result = run(pdf_policy(kind="html", body="Hi"))
    assert result.status == "SUCCESS", [s.error for s in result.steps]
    assert "<p class=mine><p>Hi</p>\n</p>" in html_of(store, result)
