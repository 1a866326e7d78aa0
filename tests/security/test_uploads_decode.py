"""Attack: photos that pass the header check are decoded before anything checks the request (issue 22,
High 3). Driven through the running app (``python app.py`` in a subprocess, plain HTTP); the app's
peak memory is read from ``/proc/PID/status`` (``bench.upload_bomb.AppProcess``).

    nice -n 10 python -m pytest tests/security/test_uploads_decode.py -q -x

A 6000 x 6000 PNG (36 megapixels: within the intake's 40-megapixel limit) is ~108 MB decoded as RGB
and ~144 MB as RGBA. Before the fix Gradio's preprocessing of the editor and the work photo decoded it
(and converted it) before any handler ran: for a request the handler never uses the photo of, and
for one the rate limiter refuses.
"""

from __future__ import annotations

import threading

import pytest

from bench.upload_bomb import AppProcess, GradioHTTP, ask_data, make_png, mode_data

ALLOWED_RISE_MB = 60  # less than one decoded copy of the photo


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    with AppProcess(root / "app", env={"R1V_RATE_PER_MINUTE": "1"}) as a:
        a.png = make_png(6000, root)
        yield a


def _at_once(n: int, fn) -> list:
    out: list = [None] * n

    def run(k: int) -> None:
        out[k] = fn(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def _texts(msg: dict) -> str:
    return " ".join(d for d in (msg.get("output") or {}).get("data") or [] if isinstance(d, str))


def test_an_unused_work_photo_is_not_decoded(app):
    """/check without a problem: the answer is "Ask a problem first"; the photo is never needed."""
    c = GradioHTTP(app.url)
    fd = c.file_data(c.upload(app.png)[0])
    app.reset_peak()
    before = app.mem_mb()["rss"]
    outs = _at_once(2, lambda k: GradioHTTP(app.url).call("check", mode_data(fd)))
    rise = app.mem_mb()["peak"] - before
    assert all("Ask a problem first" in _texts(o) for o in outs), outs
    assert rise < ALLOWED_RISE_MB, f"peak rose {rise:.0f} MB for photos nobody used"


def test_the_rate_limiter_refuses_before_the_photo_is_decoded(app):
    """One question per minute (R1V_RATE_PER_MINUTE=1): the second, with the big photo in the editor and
    in the work box, is refused by the limiter, and neither photo is decoded for it."""
    c = GradioHTTP(app.url)
    first = c.call("ask", ask_data(None, None, "What is 2+2?"))
    assert "Too many" not in _texts(first), first
    fd = c.file_data(c.upload(app.png)[0])
    app.reset_peak()
    before = app.mem_mb()["rss"]
    editor = {"background": fd, "layers": [], "composite": fd}
    second = c.call("ask", ask_data(editor, None, "And this one?"))
    third = c.call("hint", mode_data(fd))
    rise = app.mem_mb()["peak"] - before
    assert "Too many requests" in _texts(second), second
    assert "Too many requests" in _texts(third) or "Ask a problem first" in _texts(third), third
    assert rise < ALLOWED_RISE_MB, f"peak rose {rise:.0f} MB for requests the rate limiter refused"


def test_the_upload_route_decodes_nothing(app, tmp_path):
    """Uploading is writing a file and stripping its metadata from the bytes (``tutor.metadata``):
    no pixel decoded, for two 36-megapixel PNGs at once, one with an EXIF block (Pillow's own PNG
    ``getexif()`` would decode the whole image to find it)."""
    from PIL import Image

    exif_png = tmp_path / "exif.png"
    ex = Image.Exif()
    ex[0x0112] = 6
    with Image.open(app.png) as im:
        im.save(exif_png, format="PNG", exif=ex.tobytes(), compress_level=1)
    app.reset_peak()
    before = app.mem_mb()["rss"]
    paths = _at_once(2, lambda k: GradioHTTP(app.url).upload(exif_png if k else app.png)[0])
    rise = app.mem_mb()["peak"] - before
    assert all(paths), paths
    assert rise < ALLOWED_RISE_MB, f"peak rose {rise:.0f} MB for two uploads"
