"""How long the page's guarded image inputs take to refuse an oversized photo, and whether anything
decodes it first (issue 18, point 7: a 12000 x 12000 PNG took 28 s, decoded three times by Gradio).

    python -m bench.upload_check [--side 12000] [--out bench/results/upload_check.json]

Builds a real ``side`` x ``side`` RGB PNG (white with some drawing: small on disk, 144 megapixels for
12000) in Gradio's upload folder, then times each input the way the page feeds it:

- the photo editor (``SafeImageEditor``) as the browser sends it, canvas blobs in memory (background,
  one layer, composite), and as an API caller sends it (uploaded files);
- the work photo (``SafeImage``) and the photos gallery (``SafeGallery``, whose paths ``tutor.intake``
  reads in the handler);

and counts Pillow's ``DecompressionBombWarning`` (the sign that something decoded the pixels).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from PIL import Image, ImageDraw


def make_png(side: int, directory: Path) -> Path:
    path = directory / f"big-{side}.png"
    if not path.exists():
        img = Image.new("RGB", (side, side), "white")
        d = ImageDraw.Draw(img)
        for k in range(0, side, max(side // 40, 1)):
            d.line((0, k, side, side - k), fill=(20, 20, 20), width=3)
        img.save(path, format="PNG", compress_level=1)
    return path


def timed(fn) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - recorded, not raised: the timing is the point
            value = e
        secs = time.perf_counter() - t0
    bombs = sum(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)
    return {"seconds": round(secs, 3), "bomb_warnings": bombs, "result": _describe(value)}


def _describe(value) -> str:
    from webui.components import Refused

    if isinstance(value, dict):
        value = value.get("composite") if value.get("composite") is not None else value.get("background")
    if isinstance(value, list) and value:
        value = value[0][0] if isinstance(value[0], tuple) else value[0]
    if isinstance(value, Refused):
        return f"refused: {value.error.code}"
    return type(value).__name__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=12000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    from gradio import utils as gr_utils
    from gradio.components.gallery import GalleryData
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from webui.components import SafeGallery, SafeImage, SafeImageEditor

    upload_dir = Path(gr_utils.get_upload_folder()) / "r1v-bench"
    upload_dir.mkdir(parents=True, exist_ok=True)
    path = make_png(args.side, upload_dir)
    raw = path.read_bytes()
    fd = FileData(path=str(path), orig_name=path.name)

    editor = SafeImageEditor(type="pil", layers=False, brush=False, eraser=False, render=False)
    blob_id = "bench-blob"

    def editor_blobs():
        from gradio.components.image_editor import EditorDataBlobs

        editor.blob_storage[blob_id] = EditorDataBlobs(background=raw, layers=[raw], composite=raw)
        return editor.preprocess(EditorData(id=blob_id, background=None, layers=[], composite=None))

    results = {
        "file": {"side": args.side, "bytes": len(raw)},
        "editor_browser_blobs": timed(editor_blobs),
        "editor_api_files": timed(lambda: editor.preprocess(EditorData(background=fd, layers=[fd], composite=fd))),
        "work_photo": timed(lambda: SafeImage(type="pil", render=False).preprocess(fd)),
        "gallery_then_intake": timed(lambda: _gallery_then_intake(SafeGallery(type="filepath", render=False),
                                                                  GalleryData, fd)),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


def _gallery_then_intake(gallery, GalleryData, fd):
    """The gallery's preprocess, then what ``app.on_ask`` does with its paths (``tutor.intake``)."""
    from tutor.intake import load_images
    from webui.components import unrefused

    items = gallery.preprocess(GalleryData.model_validate([{"image": fd.model_dump(), "caption": None}])) or []
    try:
        load_images([unrefused(p) for p, _ in items])
    except Exception as e:  # noqa: BLE001
        from webui.components import Refused

        return [(Refused(e), None)] if hasattr(e, "code") else e
    return items


if __name__ == "__main__":
    raise SystemExit(main())
