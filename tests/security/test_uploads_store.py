"""Attacks on what the app keeps from uploads (issue 22: Medium 9 disk limits, Low cross-visitor dedup),
driven through the running app (``python app.py`` in a subprocess, plain HTTP; ``bench.upload_bomb``).

    nice -n 10 python -m pytest tests/security/test_uploads_store.py -q -x

- 500 files in one upload request were all saved: now the request is refused before the 5th file
  and nothing of it stays on disk;
- a visitor could store photos without limit: now ``R1V_VISITOR_QUOTA_MB`` of photos, then a clear
  message (``storage_full``) and nothing saved;
- anyone holding a picture could ask the file route for its content-hash name and learn whether
  somebody had uploaded it: now stored names are per visitor and keyed (``tutor.uploads``);
- a file over ``max_file_size`` (``--max-upload``) is refused by Gradio's upload route.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench.upload_bomb import AppProcess, GradioHTTP, ask_data

QUOTA_MB = 0.5


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    with AppProcess(root / "app", env={"R1V_VISITOR_QUOTA_MB": str(QUOTA_MB)}, args=("--max-upload", "2mb")) as a:
        yield a


def _png(path: Path, *, noise: int | None = None, text: str = "2x + 3 = 7") -> Path:
    if noise is None:
        img = Image.new("RGB", (320, 200), "white")
        ImageDraw.Draw(img).text((12, 90), text, fill="black")
    else:  # incompressible: ~ 3 bytes per pixel stored
        img = Image.fromarray(np.random.default_rng(noise).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    img.save(path, format="PNG")
    return path


def _texts(msg: dict) -> str:
    return " ".join(d for d in (msg.get("output") or {}).get("data") or [] if isinstance(d, str))


def _ask(c: GradioHTTP, photo: Path) -> dict:
    """``c`` is one visitor (its cookie, or its own visitor id on the page of before issue 22)."""
    fd = c.file_data(c.upload(photo)[0])
    return c.call("ask", ask_data({"background": fd, "layers": [], "composite": fd}))


def _files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


def test_one_upload_request_carries_at_most_four_files(app, tmp_path):
    raw = _png(tmp_path / "p.png").read_bytes()
    app.gradio_tmp.mkdir(parents=True, exist_ok=True)
    before = _files(app.gradio_tmp)
    files = [("files", (f"f{k}.png", raw + str(k).encode(), "image/png")) for k in range(500)]
    r = httpx.post(app.url + "/gradio_api/upload", files=files, timeout=120)
    assert r.status_code == 400 and "at most 4" in r.text and "最多 4" in r.text, (r.status_code, r.text[:200])
    assert _files(app.gradio_tmp) - before == 0  # nothing of the refused request stays on disk
    ok = httpx.post(app.url + "/gradio_api/upload", files=files[:4], timeout=60)
    assert ok.status_code == 200 and len(ok.json()) == 4


def test_a_file_over_max_file_size_is_refused(app, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (3 * 1024 * 1024))
    r = httpx.post(app.url + "/gradio_api/upload", files=[("files", ("big.png", big.read_bytes(), "image/png"))],
                   timeout=60)
    assert r.status_code == 413, (r.status_code, r.text[:200])


def test_a_visitor_may_store_only_their_quota_of_photos(app, tmp_path):
    c = GradioHTTP(app.url)
    first = _ask(c, _png(tmp_path / "n1.png", noise=1))  # ~270 KB stored
    assert "full" not in _texts(first), first
    images = app.data_dir / "images"
    stored = _files(images)
    second = _ask(c, _png(tmp_path / "n2.png", noise=2))  # would take them past 0.5 MB
    assert "Your history is full" in _texts(second) and "Delete some old problems" in _texts(second), second
    assert _files(images) == stored  # the refused photo was not kept
    other = _ask(GradioHTTP(app.url), _png(tmp_path / "n3.png", noise=3))
    assert "full" not in _texts(other), other  # the quota is per visitor


def test_nobody_can_learn_from_the_file_route_whether_a_picture_was_uploaded(app, tmp_path):
    """The attacker holds the picture and the project's source: the stored name of the content hash
    (``tutor.intake``'s hash of the pixels) must not lead to the victim's file."""
    from tutor.intake import load_image

    photo = _png(tmp_path / "secret.png", text="my exam, seat 17")
    sha = load_image(photo).sha256
    guess = (app.data_dir / "images" / sha[:2] / f"{sha}.png").resolve()

    def probe() -> int:
        return httpx.get(f"{app.url}/gradio_api/file={guess}", timeout=30).status_code

    assert probe() != 200  # nobody uploaded it yet
    out = _ask(GradioHTTP(app.url), photo)
    assert "⚠️" not in _texts(out), out
    assert probe() != 200, "the file route tells whether someone uploaded this picture"
    victims = [p for p in (app.data_dir / "images").rglob("*.png") if "thumbs" not in p.parts]
    assert victims and all(p.name != f"{sha}.png" for p in victims)
