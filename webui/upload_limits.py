"""What an upload request may carry and what it leaves: at most a few files, each without its metadata.

Count (issue 22, Medium 9): how many files one upload request may carry, capped before any is saved.

Gradio's upload route (``/gradio_api/upload``) and the editor's blob route (``/component_server``)
parse a multipart body with ``gradio.route_utils.GradioMultiPartParser``, which accepts up to 1000
files per request and writes each to disk as it streams in: 500 files in one request were all saved.
The page sends one file per request (so does ``gradio_client``), and a question has at most
``tutor.intake.MAX_IMAGES`` photos, so ``install()`` makes both routes use a parser that refuses the
file after ``MAX_FILES_PER_REQUEST``: the parse stops there, the files already streamed are removed
(Gradio's own clean-up on a parse error), and the client gets 400 with a message in both languages.
Each file is still bounded by Gradio's ``max_file_size`` (``--max-upload``, ``launch_kwargs``).

Metadata (issue 22, Medium 7): :class:`StripUploads`, an ASGI middleware, holds the upload route's
answer until ``tutor.metadata.strip_file`` has removed each uploaded photo's EXIF (GPS position
first; only the orientation is kept), so the file Gradio keeps and serves at the returned path never
carries it. Header-checked first; nothing is decoded (HEIF/AVIF with EXIF: re-encoded by the intake).

    from webui import upload_limits
    upload_limits.install()                                        # app.build_app
    launch(app_kwargs={"middleware": [upload_limits.middleware()]})  # app.launch_kwargs
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
from gradio import route_utils, routes
from gradio import utils as gr_utils
from starlette.middleware import Middleware

from tutor.intake import MAX_IMAGES
from tutor.metadata import strip_file

log = logging.getLogger("r1v.app")

MAX_FILES_PER_REQUEST = MAX_IMAGES
TOO_MANY = (f"Too many files in one upload: at most {MAX_FILES_PER_REQUEST}. / "
            f"一次上传的文件太多：最多 {MAX_FILES_PER_REQUEST} 个。")


class CappedMultiPartParser(route_utils.GradioMultiPartParser):
    """Gradio's multipart parser with at most ``MAX_FILES_PER_REQUEST`` files, refused in both languages."""

    def __init__(self, *args: Any, max_files: float = MAX_FILES_PER_REQUEST, **kw: Any):
        super().__init__(*args, max_files=min(max_files, MAX_FILES_PER_REQUEST), **kw)

    def on_headers_finished(self) -> None:
        try:
            super().on_headers_finished()
        except route_utils.MultiPartException as e:
            if "Too many files" in e.message:
                raise route_utils.MultiPartException(TOO_MANY) from e
            raise


def install() -> None:
    """Use :class:`CappedMultiPartParser` in Gradio's upload and component-server routes (idempotent)."""
    route_utils.GradioMultiPartParser = CappedMultiPartParser  # upload_fn looks it up here
    routes.GradioMultiPartParser = CappedMultiPartParser  # the component-server route imported it


def _strip_all(paths: Any) -> None:
    root = Path(gr_utils.get_upload_folder()).resolve()
    for p in paths if isinstance(paths, list) else []:
        try:
            if isinstance(p, str) and Path(p).resolve().is_relative_to(root):
                strip_file(p)
        except Exception:  # noqa: BLE001 - a file that cannot be rewritten is refused by the intake later
            log.exception("could not strip the metadata of an upload")


class StripUploads:
    """ASGI middleware: the upload route answers only after every uploaded photo lost its metadata."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" \
                or not scope.get("path", "").rstrip("/").endswith("/gradio_api/upload"):
            await self.app(scope, receive, send)
            return
        held: list[dict] = []

        async def hold(message: dict) -> None:
            held.append(message)
            if message["type"] != "http.response.body" or message.get("more_body"):
                return
            if held[0].get("status") == 200:
                try:
                    paths = json.loads(b"".join(m.get("body", b"") for m in held[1:]))
                except ValueError:
                    paths = []
                await anyio.to_thread.run_sync(_strip_all, paths)
            for m in held:
                await send(m)

        await self.app(scope, receive, hold)


def middleware() -> Middleware:
    """:class:`StripUploads`, for ``launch(app_kwargs={"middleware": [...]})``."""
    return Middleware(StripUploads)
