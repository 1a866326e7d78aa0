"""How many files one upload request may carry, capped before any is saved (issue 22, Medium 9).

Gradio's upload route (``/gradio_api/upload``) and the editor's blob route (``/component_server``)
parse a multipart body with ``gradio.route_utils.GradioMultiPartParser``, which accepts up to 1000
files per request and writes each to disk as it streams in: 500 files in one request were all saved.
The page sends one file per request (so does ``gradio_client``), and a question has at most
``tutor.intake.MAX_IMAGES`` photos, so ``install()`` makes both routes use a parser that refuses the
file after ``MAX_FILES_PER_REQUEST``: the parse stops there, the files already streamed are removed
(Gradio's own clean-up on a parse error), and the client gets 400 with a message in both languages.
Each file is still bounded by Gradio's ``max_file_size`` (``--max-upload``, ``launch_kwargs``).
Called by ``app.build_app``::

    from webui import upload_limits
    upload_limits.install()
"""

from __future__ import annotations

from typing import Any

from gradio import route_utils, routes

from tutor.intake import MAX_IMAGES

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
