"""The dashboard's errors are plain, path-free text and its Detect keeps going (issue 20, defect 9).

``gr.Error`` renders its message as HTML in the page while the API hands the same string to
scripts (gradio_client's ``AppError``), so messages must be safe as HTML *and* plain text: no
entities, no tags, no absolute server paths. The Detect tab, like ``desra detect``, skips a bad
file and lists it instead of stopping the run. The API tests use the real ``desra serve`` of
``tests/ui/conftest.py``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.ui.conftest import (  # noqa: F401 - fixtures
    client,
    corrupt_png,
    model_pair,
    pair_args,
    photo_png,
    server,
    workspace,
)

ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(=:,])/[\w.-]")


class _Tags(HTMLParser):
    """Collects the tags and entities an HTML parser finds in a string."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.found.append(f"<{tag}>")

    def handle_startendtag(self, tag, attrs):
        self.found.append(f"<{tag}/>")

    def handle_entityref(self, name):
        self.found.append(f"&{name};")

    def handle_charref(self, name):
        self.found.append(f"&#{name};")


def _markup_in(text: str) -> list[str]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser.found


def _assert_plain(message: str, *server_paths: Path) -> None:
    assert _markup_in(message) == [], message  # nothing the page could render as a tag or an entity
    for path in server_paths:
        assert str(path) not in message, message
    assert not ABSOLUTE_PATH.search(message), message


@pytest.fixture
def dashboard_paths(tmp_path, monkeypatch):
    """(workspace, Gradio upload cache inside it) as `desra serve` sets them up."""
    from ui.common import set_workspace

    ws = (tmp_path / "ws").resolve()
    cache = ws / ".gradio-cache"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    set_workspace(ws)
    return ws, cache


def _raised(fn) -> str:
    import gradio as gr

    from ui.common import guarded

    with pytest.raises(gr.Error) as caught:
        guarded(fn)()
    return caught.value.message


def test_guarded_messages_are_plain_text_safe_as_html(dashboard_paths):
    from desra.core.errors import ImageError

    ws, cache = dashboard_paths

    def fail():
        raise ImageError(
            f"{cache}/4f2a/notes.png is not a readable image (cannot identify image file '{cache}/4f2a/notes.png'); "
            f"see {ws}/detections/run-1/01-notes/report.json, /etc/desra.toml and <img src=x onerror=alert(1)> &amp; R&D"
        )

    message = _raised(fail)
    _assert_plain(message, ws, cache)
    # Readable as text in the API: names and workspace-relative paths, no entities; markup defanged.
    assert message.startswith("notes.png is not a readable image (cannot identify image file 'notes.png')")
    assert "detections/run-1/01-notes/report.json" in message and "desra.toml" in message
    assert "‹img src=x onerror=alert(1)›" in message and "R&D" in message


def test_internal_errors_are_plain_too(dashboard_paths):
    ws, _ = dashboard_paths

    def crash():
        raise KeyError(f"<script>alert('{ws}/jobs/jobs.db')</script>")

    message = _raised(crash)
    _assert_plain(message, ws)
    assert message.startswith("internal error: KeyError:") and "jobs/jobs.db" in message


def test_a_tabs_own_gr_error_is_plain_too(dashboard_paths):
    import gradio as gr

    ws, _ = dashboard_paths

    def refuse():
        raise gr.Error(f"No result named '<a href=//evil>x</a>' in {ws}/detections", title="Detect")

    message = _raised(refuse)
    _assert_plain(message, ws)
    assert message == "No result named '‹a href=//evil›x‹/a›' in detections"


# --- through the real server's API ---------------------------------------------------------------


def _detect(client, images, **kwargs):  # noqa: F811 - the fixture imported above
    from gradio_client import handle_file

    arguments = {
        "images": [handle_file(str(p)) for p in images], "demo_image": None, "segmenter": "none", "threshold": 0.7,
        "window": 11, "min_area": 200, "scale_min_area": False, **kwargs,
    }
    return client.predict(api_name="/detect", **arguments)


@pytest.fixture
def not_an_image(tmp_path) -> Path:
    """A text file named .png (Pillow's message quotes the file's path)."""
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not a picture\n" * 20)
    return path


def test_detect_keeps_going_past_a_bad_file_and_lists_it(client, photo_png, corrupt_png, not_an_image, model_pair):  # noqa: F811
    banner, slider, _, _, overlay, _, downloads, summary, showing = _detect(
        client, [corrupt_png, photo_png, not_an_image], **pair_args(model_pair)
    )
    assert "2 of 3 image(s) failed and were skipped" in banner
    assert "broken.png: broken.png is not a readable image" in banner and "notes.png: notes.png is not" in banner
    rows = summary["data"]
    assert [row[0] for row in rows] == ["chelsea_lr", "broken.png", "notes.png"]
    assert [row[1] for row in rows[1:]] == ["failed", "failed"]
    assert showing["value"] == "1. chelsea_lr" and len(slider) == 2 and overlay
    assert sorted(p.rsplit("/", 1)[-1] for p in downloads) == ["chelsea_lr.json", "mask.png", "report.json"]


def test_a_run_where_every_file_fails_is_one_plain_error(client, corrupt_png, not_an_image, model_pair, workspace):  # noqa: F811
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        _detect(client, [corrupt_png, not_an_image], **pair_args(model_pair))
    message = str(caught.value)
    assert message.startswith("all 2 image(s) failed: broken.png: broken.png is not a readable image")
    assert "cannot identify image file 'notes.png'" in message
    _assert_plain(message, workspace)


def test_api_errors_name_files_not_server_paths(client, photo_png, tmp_path, workspace):  # noqa: F811
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    garbage = tmp_path / "garbage-model.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(AppError) as caught:
        _detect(
            client, [photo_png], pair="uploaded checkpoints",
            mse_checkpoint=handle_file(str(garbage)), gan_checkpoint=handle_file(str(garbage)),
        )
    message = str(caught.value)
    assert "garbage-model.pth" in message
    _assert_plain(message, workspace)


def test_demo_images_are_offered_by_name_not_server_path(client):  # noqa: F811 - the fixture imported above
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        _detect(client, [], demo_image="/etc/passwd", pair="desra-demo-x4", mse_checkpoint=None, gan_checkpoint=None)
    message = str(caught.value)
    assert "not in the list of choices" in message and "chelsea.png" in message
    assert not ABSOLUTE_PATH.search(message.replace("/etc/passwd", "")), message
