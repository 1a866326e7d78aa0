"""The bad-input corpus (bench/bad_inputs.py) through every entrance: the page handlers, the
gradio_client API and the CLI. Each case gets its specific message or a correct answer, never a
traceback or a hang, and the app keeps serving. Also the server-side limits (tutor/limits.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.bad_inputs import make_corpus
from tests.stub_openai import StubServer
from tests.visitor import fake_request
from tutor.errors import InputError, TutorError
from tutor.limits import LIMITS, MAX_N, MAX_NEW_TOKENS, RateLimiter, cap_max_new_tokens, check_n


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


@pytest.fixture(scope="module")
def stub():
    s = StubServer()
    yield s
    s.close()


def _expected(case, root) -> TutorError | None:
    """The error the pure layer gives for this case (None: it is accepted)."""
    from tutor.intake import load_images
    from tutor.prompts import build_messages

    try:
        if case.field == "images":
            load_images(case.paths(root))
        elif case.field == "question":
            if not case.text.strip():
                return InputError("need_input", "", "")
            build_messages("solve", question=case.text, lang="en", n_images=0)
        elif case.field == "answer":
            build_messages("check", question="q", lang="en", student_answer=case.text, reference="2")
        elif case.field == "followup":
            build_messages("followup", question=case.text, lang="en", history=[])
        elif case.field == "n":
            check_n(case.value)
    except TutorError as e:
        return e
    return None


def test_the_corpus_has_30_plus_cases_each_as_labelled(corpus):
    root, cases = corpus
    assert len(cases) >= 30 and len({c.name for c in cases}) == len(cases)
    for c in cases:
        e = _expected(c, root)
        if c.expect == "answer":
            assert e is None, (c.name, e)
        else:
            assert e is not None and e.code in c.codes, (c.name, e)
            assert e.code == "need_input" or (e.message("en") != e.message("zh") and e.message("zh"))


# ------------------------------------------------------------------------------ the page handlers


@pytest.fixture(scope="module")
def tapp(tmp_path_factory, stub):
    from app import TutorApp
    from engine.http import HttpEngine
    from tutor.store import Store
    from webui.config import AppConfig, make_engine

    root = tmp_path_factory.mktemp("handlers")
    store = Store(f"sqlite:///{root / 'r1v.db'}", image_dir=root / "images")
    app = TutorApp(make_engine(AppConfig(), HttpEngine(stub.url, model="stub")), store, AppConfig())
    app.limiter = app.addr_limiter = RateLimiter(per_minute=10_000)
    yield app
    store.close()


def _status(outs: list[dict]) -> str:
    return [o["status"] for o in outs if "status" in o][-1]


def test_every_case_through_the_page_handlers(corpus, tapp):
    from webui.i18n import t

    root, cases = corpus
    req = fake_request("v-bad", "s-bad")
    for c in cases:
        kw = dict(image=None, photos=[], question="Solve 2x+3=7.", subject="math", ptype="auto", reply_lang="en", n=1)
        if c.field == "images":
            kw["photos"] = [str(p) for p in c.paths(root)]
        elif c.field == "question":
            kw["question"] = c.text
        elif c.field == "n":
            kw["n"] = c.value
        outs = list(tapp.run_mode("ask", "en", None, [], req, **kw))
        if c.field in ("answer", "followup"):
            pid = next(o["pid"] for o in outs if "pid" in o)
            mode = "check" if c.field == "answer" else "followup"
            outs = list(tapp.run_mode(mode, "en", pid, [], req, n=1, answer=c.text, work=None,
                                      message=c.text, regen=False))
        status = _status(outs)
        assert "Traceback" not in status and t("error_generic", "en") not in status, (c.name, status)
        if c.expect == "answer":
            assert status.startswith("Done in"), (c.name, status)
        else:
            e = _expected(c, root)
            want = t("need_input", "en") if e.code == "need_input" else "⚠️ " + e.message("en")
            assert status == want, (c.name, status)
    outs = list(tapp.run_mode("ask", "en", None, [], req, image=None, photos=[], question="Solve x+1=2.",
                              subject="math", ptype="auto", reply_lang="en", n=1))
    assert _status(outs).startswith("Done in")  # still serving


# -------------------------------------------------------------------------- through gradio_client


@pytest.fixture(scope="module")
def running(tmp_path_factory, stub):
    from app import build_app, launch_kwargs
    from engine.http import HttpEngine
    from tutor.store import Store
    from webui.config import AppConfig

    root = tmp_path_factory.mktemp("api")
    store = Store(f"sqlite:///{root / 'r1v.db'}", image_dir=root / "images")
    cfg = AppConfig()
    demo = build_app(engine=HttpEngine(stub.url, model="stub"), store=store, cfg=cfg)
    demo.r1v.limiter = demo.r1v.addr_limiter = RateLimiter(per_minute=10_000)
    demo.queue(max_size=16)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store))
    yield url
    demo.close()
    store.close()


def _raw_ask(url: str, question: str) -> None:
    import json

    import httpx

    body = json.dumps({"data": ["en", None, [], question, "math", "auto", "en", 1]}, ensure_ascii=True)
    r = httpx.post(f"{url}gradio_api/call/ask", content=body, headers={"Content-Type": "application/json"})
    r.raise_for_status()
    with httpx.stream("GET", f"{url}gradio_api/call/ask/{r.json()['event_id']}", timeout=60) as s:
        text = "".join(s.iter_text())
    assert "event: complete" in text and "Done in" in text and "Traceback" not in text, text[-500:]


def test_every_case_through_the_api(corpus, running):
    from gradio_client import Client, handle_file

    root, cases = corpus
    client = Client(running, verbose=False)
    for c in cases:
        e = _expected(c, root)
        q, n = "Solve 2x+3=7.", 1
        entries = []
        if c.field == "images":
            files = [handle_file(str(p)) for p in c.paths(root)]
            entries.append(([{"image": f, "caption": None} for f in files], None))  # the gallery
            if c.name in ("truncated_png", "svg", "decompression_bomb_png", "cmyk_jpeg", "exif_orientation_6"):
                entries.append(([], {"background": files[0], "layers": [], "composite": files[0]}))  # the editor
        else:
            entries.append(([], None))
            q = c.text if c.field == "question" else q
            n = c.value if c.field == "n" else n
        if c.name == "lone_surrogate":  # gradio_client cannot encode it; raw JSON ("\\ud800") can
            _raw_ask(running, q)
            continue
        for gallery, editor in entries:
            try:
                out = client.predict("en", editor, gallery, q, "math", "auto", "en", n, api_name="/ask")
            except Exception as exc:  # noqa: BLE001 - Gradio's own checks (upload size, slider range) speak first
                msg = str(exc).lower()
                assert (c.name == "oversize_21mb" and ("large" in msg or "size" in msg)) or (
                    c.field == "n" and "value" in msg and ("minimum" in msg or "maximum" in msg)), (c.name, exc)
                continue
            status = out[1]
            if c.field in ("answer", "followup"):
                api = "/check" if c.field == "answer" else "/followup"
                status = client.predict("en", [], 1, c.text, None, c.text, api_name=api)[1]
            assert "Traceback" not in status and "error" not in status.lower()[:12], (c.name, status)
            if c.expect == "answer":
                assert status.startswith("Done in"), (c.name, status)
            else:
                assert e.code == "need_input" or e.message("en") in status, (c.name, status)
    out = client.predict("en", None, [], "Solve x+1=2.", "math", "auto", "en", 1, api_name="/ask")
    assert out[1].startswith("Done in")


# ------------------------------------------------------------------------------------ the CLI


def test_every_image_and_n_case_through_the_cli(corpus, stub, capsys):
    from engine.__main__ import main

    root, cases = corpus
    ok = str(root / "ok.png")
    for c in cases:
        if c.field == "images":
            argv = ["solve", *map(str, c.paths(root))]
        elif c.field == "question":
            argv = ["solve", ok, "--question", c.text]
        elif c.field == "n":
            if not isinstance(c.value, int):
                continue  # argparse refuses "2.5" itself (exit 2, usage line)
            argv = ["solve", ok, "--n", str(c.value)]
        else:
            continue
        rc = main([*argv, "--server", stub.url, "--lang", "en"])
        err = capsys.readouterr().err
        assert "Traceback" not in err, (c.name, err)
        e = _expected(c, root)
        if c.expect == "answer" or (e is not None and e.code == "need_input"):  # the CLI has the photo
            assert rc == 0, (c.name, err)
        elif c.field == "n":  # the engine's own check, worded its way
            assert rc == 2 and "number of candidates" in err and err.count("\n") == 1, (c.name, err)
        else:
            assert rc == 2 and err.strip() == f"error: {e.message('en')}", (c.name, err)


# ------------------------------------------------------------------------------------ the limits


def test_limits_are_named_and_reused():
    from engine.core import MAX_N as ENGINE_MAX_N
    from tutor.intake import DEFAULT_LIMITS, MAX_IMAGES
    from tutor.prompts import MAX_QUESTION_CHARS

    assert LIMITS["MAX_N"] == MAX_N == ENGINE_MAX_N
    assert LIMITS["MAX_IMAGES_PER_QUESTION"] == MAX_IMAGES == 4
    assert LIMITS["MAX_QUESTION_CHARS"] == MAX_QUESTION_CHARS
    assert LIMITS["MAX_UPLOAD_BYTES"] == DEFAULT_LIMITS.max_bytes


@pytest.mark.parametrize("n", [0, -1, MAX_N + 1, 2.5, "x", None, float("nan"), 10**30])
def test_check_n_refuses(n):
    with pytest.raises(InputError) as e:
        check_n(n)
    assert e.value.code == "bad_n"


def test_check_n_accepts_and_max_tokens_are_capped():
    assert [check_n(v) for v in (1, "3", 4.0, MAX_N)] == [1, 3, 4, MAX_N]
    assert cap_max_new_tokens(None) is None and cap_max_new_tokens(64) == 64
    assert cap_max_new_tokens(10**9) == MAX_NEW_TOKENS


def test_app_caps_max_new_tokens(tmp_path):
    from app import TutorApp
    from tutor.store import Store
    from webui.config import AppConfig, make_engine

    with Store(f"sqlite:///{tmp_path / 'db'}", image_dir=tmp_path / "i") as store:
        cfg = AppConfig(max_new_tokens=10**9)
        app = TutorApp(make_engine(cfg, SimpleNamespace(name="x", stop=lambda: None)), store, cfg)
        assert app.sampling.max_new_tokens == MAX_NEW_TOKENS


def test_rate_limiter_sliding_window():
    now = [0.0]
    lim = RateLimiter(per_minute=3, clock=lambda: now[0])
    for _ in range(3):
        lim.hit("a")
    with pytest.raises(InputError) as e:
        lim.hit("a")
    assert e.value.code == "rate_limited" and "60 s" in e.value.message("en") and "秒" in e.value.message("zh")
    lim.hit("b")  # per visitor
    now[0] = 59.9
    with pytest.raises(InputError):
        lim.hit("a")
    now[0] = 60.0
    lim.hit("a")
    assert lim.remaining("a") == 2 and lim.remaining("b") == 3  # the hits at t=0 have left the window


def test_rate_limit_enforced_by_the_app_per_visitor(tapp):
    req = fake_request("v-rate", "s-rate")
    tapp.limiter = RateLimiter(per_minute=2)
    try:
        kw = dict(image=None, photos=[], question="Solve x+1=2.", subject="math", ptype="auto", reply_lang="en", n=1)
        statuses = [_status(list(tapp.run_mode("ask", "en", None, [], req, **kw))) for _ in range(3)]
        assert statuses[0].startswith("Done") and statuses[1].startswith("Done")
        assert "Too many requests" in statuses[2]
        assert len(tapp.store.list_problems("v:v-rate")) == 2  # the refused request saved nothing
        assert _status(list(tapp.run_mode("ask", "en", None, [], fake_request("v-other", "s-other"), **kw))).startswith("Done")
    finally:
        tapp.limiter = RateLimiter(per_minute=10_000)


# ------------------------------------------------- nothing decodes an image before the intake's check


def _real_png(width: int, height: int) -> bytes:
    """A complete, valid greyscale PNG (every row present, all black): decoding it would take Pillow
    seconds and raise its DecompressionBombWarning at 12000 x 12000; the file is ~150 kB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z, row, parts = zlib.compressobj(6), b"\x00" * (width + 1), []
    for _ in range(height):
        parts.append(z.compress(row))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    """(path in Gradio's upload folder, bytes) of a real 12000 x 12000 PNG (issue 18: refused after 28 s)."""
    from pathlib import Path

    from gradio import utils as gr_utils

    raw = _real_png(12_000, 12_000)
    folder = Path(gr_utils.get_upload_folder()) / "r1v-test-big"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big-12000.png"
    path.write_bytes(raw)
    return path, raw


def _timed_no_bomb_warning(fn):
    import time
    import warnings

    from PIL import Image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        value = fn()
        secs = time.perf_counter() - t0
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)], "something decoded it"
    return value, secs


def test_guarded_inputs_refuse_a_12000px_png_from_its_header(big_png):
    """Each guarded input refuses it in well under a second, with the intake's code, and nothing
    decodes it first (no DecompressionBombWarning): the editor as the browser sends it (canvas blobs:
    background, a layer, composite) and as an API caller does (files), the work photo, the gallery."""
    from gradio.components.gallery import GalleryData
    from gradio.components.image_editor import EditorData, EditorDataBlobs
    from gradio.data_classes import FileData

    from webui.components import Refused, SafeGallery, SafeImage, SafeImageEditor

    path, raw = big_png
    fd = FileData(path=str(path), orig_name=path.name)
    editor = SafeImageEditor(type="pil", layers=False, brush=False, eraser=False, render=False)
    editor.blob_storage["b1"] = EditorDataBlobs(background=raw, layers=[raw], composite=raw)
    gallery = GalleryData.model_validate([{"image": fd.model_dump(), "caption": None}])
    for name, call in (
        ("editor blobs", lambda: editor.preprocess(EditorData(id="b1", background=None, layers=[], composite=None))),
        ("editor files", lambda: editor.preprocess(EditorData(background=fd, layers=[fd], composite=fd))),
        ("work photo", lambda: SafeImage(type="pil", render=False).preprocess(fd)),
        ("gallery", lambda: SafeGallery(type="pil", render=False).preprocess(gallery)),
    ):
        value, secs = _timed_no_bomb_warning(call)
        if isinstance(value, dict):
            value = value["composite"]
        elif isinstance(value, list):
            value = value[0][0]
        assert isinstance(value, Refused) and value.error.code == "image_too_many_pixels", name
        assert secs < 0.5, (name, secs)
    assert "b1" not in editor.blob_storage  # a refused upload's blobs are not kept


def test_the_editor_decodes_only_the_composite_and_the_gallery_keeps_good_pictures(tmp_path):
    import io
    from pathlib import Path

    from gradio import utils as gr_utils
    from gradio.components.gallery import GalleryData
    from gradio.components.image_editor import EditorData, EditorDataBlobs
    from gradio.data_classes import FileData
    from PIL import Image

    from tutor.intake import load_image
    from webui.components import Refused, SafeGallery, SafeImageEditor

    def png(color):
        buf = io.BytesIO()
        Image.new("RGB", (120, 80), color).save(buf, format="PNG")
        return buf.getvalue()

    editor = SafeImageEditor(type="pil", layers=False, brush=False, eraser=False, render=False)
    editor.blob_storage["b2"] = EditorDataBlobs(background=png("red"), layers=[png("white")], composite=png("blue"))
    out = editor.preprocess(EditorData(id="b2", background=None, layers=[], composite=None))
    assert out["background"] is None and out["layers"] == [] and out["composite"] == png("blue")  # undecoded
    assert load_image(out["composite"]).image.getpixel((1, 1)) == (0, 0, 255)  # the handler decodes it
    folder = Path(gr_utils.get_upload_folder()) / "r1v-test-gallery"
    folder.mkdir(parents=True, exist_ok=True)
    good, text = folder / "good.png", folder / "notes.png"
    good.write_bytes(png("green"))
    text.write_text("not a photo", encoding="utf-8")
    items = SafeGallery(type="filepath", render=False).preprocess(GalleryData.model_validate(
        [{"image": FileData(path=str(p)).model_dump(), "caption": None} for p in (good, text)]))
    assert items[0][0] == str(good)
    assert isinstance(items[1][0], Refused) and items[1][0].error.code == "image_not_an_image"


def test_a_12000px_png_through_the_api_is_refused_fast(running, big_png):
    import time

    from gradio_client import Client, handle_file

    path, _ = big_png
    client = Client(running, verbose=False)
    f = handle_file(str(path))
    for editor, gallery in (({"background": f, "layers": [], "composite": f}, []), (None, [{"image": f, "caption": None}])):
        t0 = time.perf_counter()
        out = client.predict("en", editor, gallery, "", "math", "auto", "en", 1, api_name="/ask")
        secs = time.perf_counter() - t0
        assert "too many pixels" in out[1], out[1]
        assert secs < 5, secs  # the upload and the round trip included; the refusal itself is milliseconds
