"""Attacks on what stays downloadable (issue 22, Medium 7), driven through the running app
(``python app.py`` in a subprocess, plain HTTP; ``bench.upload_bomb``).

    nice -n 10 python -m pytest tests/security/test_uploads_delete.py -q -x

- after Delete, the photo, the student's original upload, the history card and the exported page
  stayed downloadable at their URLs: now every copy is gone (``webui.files``);
- the original upload kept its EXIF (the GPS position of a phone photo) and was served as sent: now
  the upload route answers only after the metadata is stripped, orientation kept (``tutor.metadata``);
- nothing ever cleared Gradio's cache: now files older than ``R1V_CACHE_MAX_AGE_S`` are removed.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from bench.upload_bomb import AppProcess, GradioHTTP, ask_data

GPS = 0x8825


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with AppProcess(tmp_path_factory.mktemp("delete") / "app") as a:
        yield a


def _gps_photo(path: Path) -> Path:
    """A phone-like JPEG: EXIF with a GPS position, a camera maker, orientation 6 (turned)."""
    img = Image.new("RGB", (320, 200), "white")
    ImageDraw.Draw(img).text((12, 90), "x + 1 = 3", fill="black")
    ex = Image.Exif()
    ex[0x0112] = 6
    ex[0x010F] = "PhoneCo"
    ex.get_ifd(GPS).update({1: "N", 2: (37.0, 46.0, 30.0), 3: "W", 4: (122.0, 25.0, 10.0)})
    img.save(path, format="JPEG", exif=ex.tobytes())
    return path


def _served(app: AppProcess, path: str) -> httpx.Response:
    return httpx.get(f"{app.url}/gradio_api/file={path}", timeout=30)


def _files_in(value) -> set[str]:
    """Every file path an output names (chat photos, gallery cards, the exported page)."""
    out: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("path"), str) and value["path"].startswith("/"):
            out.add(value["path"])
        for v in value.values():
            out |= _files_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            out |= _files_in(v)
    return out


def test_an_upload_is_served_without_its_gps_position(app, tmp_path):
    c = GradioHTTP(app.url)
    path = c.upload(_gps_photo(tmp_path / "phone.jpg"))[0]
    r = _served(app, path)
    assert r.status_code == 200
    with Image.open(io.BytesIO(r.content)) as im:
        exif = im.getexif()
        assert not exif.get_ifd(GPS) and GPS not in exif, "the served upload still says where it was taken"
        assert 0x010F not in exif  # nor the camera
        assert exif.get(0x0112) == 6  # still shown upright


def test_delete_removes_every_copy(app, tmp_path):
    c = GradioHTTP(app.url)
    upload = c.upload(_gps_photo(tmp_path / "mine.jpg"))[0]
    fd = c.file_data(upload)
    asked = c.call("ask", ask_data({"background": fd, "layers": [], "composite": fd}, None, "Solve it"))
    assert asked.get("success", True) and "⚠️" not in str(asked.get("output")), asked
    exported = c.call("export", ["en", None])
    history = c.call("history", ["en"])
    names = _files_in(asked.get("output")) | _files_in(exported.get("output")) | _files_in(history.get("output"))
    names.add(upload)
    served = {p for p in names if _served(app, p).status_code == 200}
    assert any(p.endswith(".html") for p in served) and len(served) >= 3, names  # photo, card, export, upload
    first = c.call("delete", ["en", None, None])
    second = c.call("delete", ["en", None, None])
    assert "Deleted" in str(second.get("output")), (first, second)
    still = sorted(p for p in served if _served(app, p).status_code == 200)
    assert not still, f"downloadable after Delete: {still}"


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory):
    with AppProcess(tmp_path_factory.mktemp("age") / "app", env={"R1V_CACHE_MAX_AGE_S": "2"}) as a:
        yield a


def test_cached_files_are_removed_after_their_age(short_lived, tmp_path):
    c = GradioHTTP(short_lived.url)
    path = c.upload(_gps_photo(tmp_path / "old.jpg"))[0]
    assert _served(short_lived, path).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(path).exists():
        time.sleep(0.5)
    assert _served(short_lived, path).status_code != 200, "an upload stays in Gradio's cache for ever"


def test_a_restart_removes_what_a_killed_process_left(tmp_path):
    """Files in the app's Gradio folder older than the bound (a killed process never ran Gradio's
    clean-up at shutdown) are gone once the app has started; a recent one is kept."""
    import os

    root = tmp_path / "app"
    old = root / "gradio" / ("a" * 64) / "left-behind.jpg"
    fresh = root / "gradio" / ("b" * 64) / "recent.jpg"
    for p in (old, fresh):
        _gps_photo(p.parent.mkdir(parents=True, exist_ok=True) or p)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    with AppProcess(root) as a:
        assert _served(a, str(old)).status_code != 200 and not old.exists()
        assert fresh.exists()
