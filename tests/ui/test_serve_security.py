"""What `desra serve` promises about access, against running servers: --auth closes every route that
reads or runs anything, uploads over the limit are refused, only the workspace is served, and a
non-loopback address without --auth is warned about."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ui.conftest import ROOT, _free_port, _wait_until_up

NAMED_ENDPOINTS = ("detect", "evaluate", "submit_job", "job_status")


def _start(workspace: Path, log_path: Path, *args: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "desra", "serve", "--port", str(port), "--workspace", str(workspace), *args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
    return process, port


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """(url, workspace, log) of `desra serve --host 0.0.0.0 --auth alice:s3:cret`, reached on 127.0.0.1."""
    workspace = tmp_path_factory.mktemp("auth-workspace")
    (workspace / "secret.txt").write_text("inside the workspace")
    log_path = tmp_path_factory.mktemp("auth-server") / "server.log"
    process, port = _start(workspace, log_path, "--host", "0.0.0.0", "--auth", "alice:s3:cret")
    url = f"http://127.0.0.1:{port}"
    try:
        # The page answers 200 (Gradio's login page) once the server is up.
        _wait_until_up(url + "/", process, log_path)
        yield url, workspace, log_path
    finally:
        _stop(process)


def _protected_requests(workspace: Path) -> list[tuple[str, str, dict]]:
    """(method, path, httpx kwargs) of every route that reads the app, a file, or runs a function."""
    routes = [
        ("GET", "/config", {}),
        ("GET", "/gradio_api/info", {}),
        ("GET", "/gradio_api/openapi.json", {}),
        ("GET", f"/gradio_api/file={workspace / 'secret.txt'}", {}),
        ("HEAD", f"/gradio_api/file={workspace / 'secret.txt'}", {}),
        ("POST", "/gradio_api/upload", {"files": {"files": ("a.png", b"not much", "image/png")}}),
        ("GET", "/gradio_api/upload_progress?upload_id=x", {}),
        ("POST", "/gradio_api/queue/join", {"json": {"data": [], "fn_index": 0, "session_hash": "x"}}),
        ("GET", "/gradio_api/queue/data?session_hash=x", {}),
        ("GET", "/monitoring", {}),
    ]
    for name in NAMED_ENDPOINTS:
        routes += [
            ("POST", f"/gradio_api/call/{name}", {"json": {"data": []}}),
            ("POST", f"/gradio_api/run/{name}", {"json": {"data": []}}),
            ("POST", f"/gradio_api/api/{name}", {"json": {"data": []}}),
            ("GET", f"/gradio_api/call/{name}/some-event", {}),
        ]
    return routes


def test_auth_refuses_every_route_without_credentials(auth_server):
    import httpx

    url, workspace, log_path = auth_server
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        for method, path, kwargs in _protected_requests(workspace):
            response = anonymous.request(method, path, **kwargs)
            assert response.status_code in (401, 403), f"{method} {path} answered {response.status_code} without credentials"
            assert "inside the workspace" not in response.text
        # The page itself is the login form: its embedded config has no components or endpoints.
        import re

        page = anonymous.get("/").text
        assert re.search(r'"auth_required"\s*:\s*true', page), page[:500]
        assert re.search(r'"components"\s*:\s*\[\]', page) and "Model pair" not in page.split("gradio_api_info")[0]
        assert anonymous.post("/login", data={"username": "alice", "password": "wrong"}).status_code in (400, 401)
        assert anonymous.get("/config").status_code == 401
    # With the password (split at the first colon: "s3:cret"), the same routes open.
    with httpx.Client(base_url=url, timeout=30) as alice:
        assert alice.post("/login", data={"username": "alice", "password": "s3:cret"}).status_code == 200
        assert alice.get("/config").status_code == 200
        assert alice.get(f"/gradio_api/file={workspace / 'secret.txt'}").text == "inside the workspace"
    # A non-loopback address WITH --auth is not warned about.
    assert "warning" not in log_path.read_text().lower()


def test_the_login_page_describes_no_endpoint(auth_server):
    import httpx

    url, _, _ = auth_server
    # Gradio 6 embeds window.gradio_api_info (every named endpoint and its parameters) in the login page it
    # serves without credentials; ui.app.LoginPageWithoutApiInfo empties it there, and only there.
    page = httpx.get(url + "/", timeout=30).text
    assert "window.gradio_api_info = null;" in page
    assert not [name for name in NAMED_ENDPOINTS if f'"/{name}"' in page]
    assert "desra-demo-x4" not in page  # the model-pair choices
    with httpx.Client(base_url=url, timeout=30) as alice:
        assert alice.post("/login", data={"username": "alice", "password": "s3:cret"}).status_code == 200
        logged_in = alice.get("/").text
        assert "window.gradio_api_info = null;" not in logged_in and '"/detect"' in logged_in


def test_upload_over_the_limit_is_refused(server):
    import httpx

    from ui.app import MAX_FILE_SIZE

    limit = int(MAX_FILE_SIZE.removesuffix("mb")) * 1024 * 1024
    with httpx.Client(base_url=server.rstrip("/"), timeout=120) as client:
        small = client.post("/gradio_api/upload", files={"files": ("small.png", b"x" * 1024, "image/png")})
        assert small.status_code == 200 and len(small.json()) == 1
        big = client.post("/gradio_api/upload", files={"files": ("big.png", b"x" * (limit + 1024 * 1024), "image/png")})
        assert big.status_code == 413, (big.status_code, big.text[:200])


def test_only_the_workspace_is_served(server, workspace):
    import httpx

    (workspace / "served.txt").write_text("workspace file")
    outside = workspace.parent / "outside.txt"
    outside.write_text("not for the web")
    with httpx.Client(base_url=server.rstrip("/"), timeout=30) as client:
        assert client.get(f"/gradio_api/file={workspace / 'served.txt'}").text == "workspace file"
        for path in (outside, workspace / ".." / "outside.txt", Path("/etc/hostname"), ROOT / "pyproject.toml"):
            response = client.get(f"/gradio_api/file={path}")
            assert response.status_code == 403, f"{path} answered {response.status_code}"
            assert "not for the web" not in response.text


def test_non_loopback_address_without_auth_is_warned_about(tmp_path):
    log_path = tmp_path / "server.log"
    process, _ = _start(tmp_path / "ws", log_path, "--host", "0.0.0.0")
    try:
        deadline = time.monotonic() + 60
        while "warning" not in log_path.read_text() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        text = log_path.read_text()
        assert "desra: warning: serving on 0.0.0.0 without --auth" in text, text[-2000:]
    finally:
        _stop(process)
