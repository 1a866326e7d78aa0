"""The pinned SGLang's own code judges our chat template, on a CPU (issue 19).

SGLang's InternVL image placeholder changed across releases (FACTS.md): a template can render fine and
still have its images dropped or mangled by the server's processor, with no error. So the request our
HTTP client sends (``engine.http.to_openai_messages``) goes through SGLang 0.5.23 itself, in its own
venv (``engine.envs``, built on first use, about 10 GiB), on the converted tiny checkpoint
(``convert --to original``, with its processor config): ``tests/sglang_probe.py`` runs its template
loader, ``OpenAIServingChat._process_messages``, ``load_mm_data`` and ``process_mm_data_async`` and
prints what came out. For one and two images: every image matched, one ``<img>`` block each with
256 context tokens per tile (the tile count from the project's own InternVL processor), no leftover
placeholder, ``max_tiles`` honoured, the ``<think>`` pre-fill kept. The same checks must fail on a
template that emits ``<IMG_CONTEXT>`` (the negative case).

    MPLCONFIGDIR=/tmp/mplc python -m pytest tests/test_sglang_template.py -q

Skipped, with the reason, only when the SGLang env cannot be built (no package index);
``R1V_REQUIRE_ENGINE_ENVS=1`` turns that into a failure.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from engine.envs import SGLANG_VERSION
from engine.http import to_openai_messages
from engine.serve import CHAT_TEMPLATE
from tests.engine_envs import engine_python
from tutor.prompts import build_messages, render_text_prompt

PROBE = Path(__file__).with_name("sglang_probe.py")
SIZES = {"one image, 13 tiles": [(800, 600)], "two images, 13 and 11 tiles": [(800, 600), (500, 1200)]}
MAX_TILES = {"one image, max_tiles 6": ([(800, 600)], 6)}
# Aspect ratios with several grids at the same distance (1:1 -> 1x1, 2x2, 3x3; 2:1 -> 2x1, 4x2): InternVL's
# reference tiling (and transformers', ours) takes the larger grid only for a large enough image; SGLang
# 0.5.23's dynamic_preprocess always takes the largest. Small square or 2:1 images get more tiles there.
TIES = {"two small images on tied grids": [(448, 448), (900, 450)]}


def _png(size) -> bytes:
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((10, 10), f"{size[0]}x{size[1]}", fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _data_url(size) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(_png(size)).decode()


def _tiles(sizes, max_tiles: int) -> list[int]:
    """Tiles per image from the project's own InternVL processor (the in-process engine's)."""
    from transformers import AutoProcessor

    from engine.tiny import tiny_path

    proc = AutoProcessor.from_pretrained(tiny_path())
    return [proc.image_processor(images=[Image.new("RGB", s)], max_patches=max_tiles)["num_patches"][0]
            for s in sizes]


def _cases() -> dict[str, dict]:
    out = {}
    for name, (sizes, tiles) in {**{k: (v, 12) for k, v in {**SIZES, **TIES}.items()}, **MAX_TILES}.items():
        msgs = build_messages("solve", question="Find x.", lang="en", n_images=len(sizes))
        out[name] = {"sizes": sizes, "max_tiles": tiles, "prompt": render_text_prompt(msgs),
                     "openai": to_openai_messages(msgs, [_data_url(s) for s in sizes], max_tiles=tiles)}
    return out


@pytest.fixture(scope="module")
def sglang_python() -> Path:
    return engine_python("sglang")  # built on first use; skipped with the reason only if it cannot be


@pytest.fixture(scope="module")
def probed(sglang_python, tmp_path_factory):
    """(cases, SGLang's results per template): one probe process for both templates."""
    from engine.convert import tiny_original_path

    tmp = tmp_path_factory.mktemp("sglang")
    wrong = tmp / "img_context_template.jinja"  # the placeholder a release after SGLang PR 9381 matched
    src = CHAT_TEMPLATE.read_text(encoding="utf-8")
    assert src.count("\n<image>\n") == 1
    wrong.write_text(src.replace("\n<image>\n", "\n<IMG_CONTEXT>\n"), encoding="utf-8")
    cases = _cases()
    spec = tmp / "spec.json"
    spec.write_text(json.dumps({"model": str(tiny_original_path()),
                                "templates": {"ours": str(CHAT_TEMPLATE), "img_context": str(wrong)},
                                "cases": [c["openai"] for c in cases.values()]}))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([str(sglang_python), str(PROBE), str(spec)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("R1V-PROBE ")), None)
    assert proc.returncode == 0 and line, f"probe failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    result = json.loads(line[len("R1V-PROBE "):])
    return cases, result


def check(case: dict, got: dict, tiles: list[int]) -> None:
    """What a correct prompt looks like after SGLang's processor, ``tiles`` being the tiles per image
    (plain asserts: the negative case expects them to fail)."""
    n = len(tiles)
    assert got["rendered_prompt"] == case["prompt"], "SGLang rendered the template differently"
    assert got["image_data"] == n, "images dropped before the processor"
    assert [x["images"] for x in got["loads"]] == [n], f"load_mm_data matched {got['loads']}, not {n} images"
    assert got["tiles"] == tiles, f"SGLang tiled the images as {got['tiles']}, not {tiles}"
    assert got["img_blocks"] == [got["num_image_token"] * t for t in tiles], \
        f"context tokens per image {got['img_blocks']} != {got['num_image_token']} x {tiles} tiles"
    assert got["mm_items"] == n
    assert got["stray_context_tokens"] == 0, "context tokens outside an <img> block"
    assert got["leftover"] == {"<image>": 0, "<IMG_CONTEXT>": 0, "<<<...>>>": 0}, f"leftover {got['leftover']}"
    assert got["ends_with_think"], "the <think> pre-fill was lost"


def test_the_pinned_sglang_ran_its_internvl_processor(probed):
    _, result = probed
    assert result["sglang"] == SGLANG_VERSION
    assert result["processor"] == "InternVLProcessor" and result["llm_arch"] == "Qwen2ForCausalLM"


def _got(probed, template: str, name: str) -> tuple[dict, dict]:
    cases, result = probed
    return cases[name], result["templates"][template][list(cases).index(name)]


@pytest.mark.parametrize("name", [*SIZES, *MAX_TILES])
def test_our_template_is_matched_and_expanded_by_sglang(probed, name):
    case, got = _got(probed, "ours", name)
    tiles = _tiles(case["sizes"], case["max_tiles"])  # the project's processor: SGLang must agree here
    assert got["num_image_token"] == 256
    assert tiles == {"one image, 13 tiles": [13], "two images, 13 and 11 tiles": [13, 11],
                     "one image, max_tiles 6": [7]}[name]
    assert got["max_dynamic_patch"] == case["max_tiles"]  # from image_url, as engine.http sends it
    check(case, got, tiles)


def _largest_tied_grid(size, max_tiles: int = 12) -> int:
    """SGLang 0.5.23's tiles for an image whose aspect ratio is exactly a grid's: the largest grid of
    that ratio within max_tiles, plus the thumbnail when it has more than one tile."""
    w, h = size
    blocks = max(x * y for x in range(1, max_tiles + 1) for y in range(1, max_tiles + 1)
                 if x * y <= max_tiles and x * h == y * w)
    return blocks + (blocks > 1)


def test_sglang_takes_the_largest_grid_on_a_tie_where_internvl_does_not(probed):
    """Not a corruption (each image still matched and expanded), a difference to know: a small square
    image is 10 tiles (2,560 tokens) on SGLang 0.5.23 and 1 tile in process and in InternVL's reference."""
    [name] = TIES
    case, got = _got(probed, "ours", name)
    ours = _tiles(case["sizes"], 12)
    sglang = [_largest_tied_grid(s) for s in case["sizes"]]
    assert ours == [1, 3] and sglang == [10, 9]
    check(case, got, sglang)
    with pytest.raises(AssertionError, match="tiled the images"):
        check(case, got, ours)


@pytest.mark.parametrize("name", list(SIZES))
def test_a_template_emitting_img_context_fails_the_same_checks(probed, name):
    case, got = _got(probed, "img_context", name)
    with pytest.raises(AssertionError, match="leftover"):  # a placeholder string left in the prompt
        check({**case, "prompt": case["prompt"].replace("<image>\n", "<IMG_CONTEXT>\n")}, got,
              _tiles(case["sizes"], case["max_tiles"]))
