"""Downloads against a real HTTP server on 127.0.0.1: success, resume after a cut, bad hash, server gone."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from desra.core.errors import ChecksumError, DownloadError
from desra.models.download import download, partial_path, pull

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB that is not all one value


class _Server:
    """A loopback HTTP server for one file that honours Range and can cut the first transfer short."""

    def __init__(self, payload: bytes, cut_after: int | None = None):
        self.payload, self.cut_after, self.ranges = payload, cut_after, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                start = 0
                header = self.headers.get("Range")
                server.ranges.append(header)
                if header:
                    start = int(header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(payload) - start))
                self.end_headers()
                body = payload[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None  # drop the connection mid-file once
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/model.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    servers = []

    def start(**kwargs):
        servers.append(_Server(PAYLOAD, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_success_with_hash_and_progress(server, tmp_path):
    s = server()
    ticks = []
    dest = download(s.url, tmp_path / "sub" / "m.pth", sha256=SHA, progress=lambda d, t: ticks.append((d, t)))
    assert dest.read_bytes() == PAYLOAD
    assert ticks[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not partial_path(dest).exists()


def test_resume_after_a_cut(server, tmp_path):
    s = server(cut_after=300_000)
    dest = tmp_path / "m.pth"
    with pytest.raises(DownloadError, match="resume"):
        download(s.url, dest, sha256=SHA)
    assert not dest.exists(), "a half file must never sit at the destination"
    assert partial_path(dest).stat().st_size == 300_000
    download(s.url, dest, sha256=SHA)
    assert s.ranges == [None, "bytes=300000-"]
    assert dest.read_bytes() == PAYLOAD and not partial_path(dest).exists()


def test_bad_hash_leaves_no_file(server, tmp_path):
    s = server()
    dest = tmp_path / "m.pth"
    with pytest.raises(ChecksumError, match=SHA):
        download(s.url, dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_server_gone_says_where_to_put_the_file(server, tmp_path):
    s = server()
    s.close()
    dest = tmp_path / "m.pth"
    with pytest.raises(DownloadError) as info:
        download(s.url, dest, timeout=5)
    message = str(info.value)
    assert "\n" not in message and s.url in message and str(dest) in message
    assert not dest.exists()


def test_pull_uses_the_registry(cache_home):
    from desra.models.registry import get_model, model_path

    with pytest.raises(DownloadError, match="by hand") as info:
        pull("RealESRGAN_LDL_x4")  # published only as a Google Drive folder
    assert str(model_path(get_model("RealESRGAN_LDL_x4"))) in str(info.value)
    assert str(cache_home) in str(model_path(get_model("BSRGAN")))
