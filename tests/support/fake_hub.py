"""Test-only: a Hugging Face Hub on 127.0.0.1 that serves one model repository at one commit.

It answers the requests ``huggingface_hub`` really makes for a download: the recursive tree
listing (``/api/models/{repo}/tree/{revision}``), the model info (``/api/models/{repo}/revision/
{revision}``) and ``HEAD``/``GET`` of ``/{repo}/resolve/{revision}/{path}`` with the headers the
library insists on (``X-Repo-Commit``, ``ETag``, ``Content-Length``). Each request is recorded,
so a test can tell what was downloaded and that nothing went online twice.

:func:`hub_environment` points ``huggingface_hub`` at a per-test ``HF_HOME`` (and endpoint): the
library reads its environment once, at import, so its ``constants`` module is re-read under the
new environment and again under the old one afterwards.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import huggingface_hub.constants

HUB_VARIABLES = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "XDG_CACHE_HOME",
)


@contextmanager
def hub_environment(**variables: str) -> Iterator[None]:
    """Run with these Hugging Face variables only (the others unset), as a fresh process would."""
    saved = {name: os.environ.get(name) for name in HUB_VARIABLES}
    try:
        for name in HUB_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(variables)
        importlib.reload(huggingface_hub.constants)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        importlib.reload(huggingface_hub.constants)


class FakeHub:
    """Serves ``files`` (repository path -> bytes) as ``repo_id`` at ``commit`` (and ``main``)."""

    def __init__(self, repo_id: str, commit: str, files: dict[str, bytes]) -> None:
        self.repo_id = repo_id
        self.commit = commit
        self.files = dict(files)
        self.requests: list[tuple[str, str]] = []  # (method, repository path or API path)
        self.broken: set[str] = set()  # listed in the tree, but answered 404
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @classmethod
    def from_folder(cls, repo_id: str, commit: str, folder: Path, **extra: bytes) -> FakeHub:
        files = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }
        return cls(repo_id, commit, {**files, **extra})

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def downloaded(self) -> list[str]:
        """The repository files fetched with GET, in order."""
        return [path for method, path in self.requests if method == "GET"]

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *_args: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    api_prefix = f"/api/models/{hub.repo_id}/"
    resolve_prefix = f"/{hub.repo_id}/resolve/"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:  # keep pytest's output clean
            pass

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def _answer(self, send_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if path.startswith(api_prefix):
                self._api(path[len(api_prefix) :])
            elif path.startswith(resolve_prefix):
                revision, _, name = path[len(resolve_prefix) :].partition("/")
                self._file(revision, name, send_body)
            else:
                self._error(404, "RepoNotFound", "Repository not found")

        def _api(self, rest: str) -> None:
            hub.requests.append(("API", rest))
            kind, _, revision = rest.partition("/")
            if not self._known(revision):
                return
            if kind == "tree":
                body = [
                    {"type": "file", "path": name, "size": len(data), "oid": _etag(data)[:40]}
                    for name, data in sorted(hub.files.items())
                ]
            elif kind == "revision":
                body = {
                    "id": hub.repo_id,
                    "sha": hub.commit,
                    "siblings": [{"rfilename": name} for name in sorted(hub.files)],
                }
            else:
                self._error(404, "EntryNotFound", f"No API {kind}")
                return
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def _file(self, revision: str, name: str, send_body: bool) -> None:
            if not self._known(revision):
                return
            data = hub.files.get(name)
            if data is None or name in hub.broken:
                self._error(404, "EntryNotFound", f"{name} does not exist")
                return
            hub.requests.append(("GET" if send_body else "HEAD", name))
            headers = {"ETag": f'"{_etag(data)}"', "Content-Type": "application/octet-stream"}
            self._send(200, data, headers, send_body=send_body)

        def _known(self, revision: str) -> bool:
            if revision in (hub.commit, "main"):
                return True
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return False

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message})

        def _send(
            self, status: int, body: bytes, headers: dict[str, str], send_body: bool = True
        ) -> None:
            self.send_response(status)
            for key, value in {**headers, "X-Repo-Commit": hub.commit}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                with suppress(BrokenPipeError, ConnectionResetError):  # the client stopped
                    self.wfile.write(body)

    return Handler
