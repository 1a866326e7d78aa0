"""Checks of an R1V2 checkpoint's small files against what the project assumes: the part of the doctor
that needs no tokenizer and no network, shared with the converter (which refuses what would load wrong).

    from engine.checkpoint_checks import weight_shapes, config_rows, weight_rows
    shapes, source = weight_shapes(Path("ckpt"))   # the index's names, or the safetensors headers only
    rows = config_rows(config) + weight_rows(config, shapes)

Every check returns ``Row`` s: the check's name, a verdict (``pass``, ``FAIL`` or ``n/a``) and what was
seen. ``blocks_convert`` marks the failures after which a converted checkpoint would load wrong:
``refusals(rows)`` is what ``engine.convert.convert_to_native`` refuses on. Weight files are never
decoded: a directory's names come from ``model.safetensors.index.json`` or, with no index, from each
``.safetensors`` file's JSON header (its first 8 bytes give the header's length; the header is read
only after that length is checked against the file).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from tutor.errors import InputError

INDEX = "model.safetensors.index.json"
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on a header
PASS, FAIL, NA = "pass", "FAIL", "n/a"
ORIGINAL_ARCHS = ("InternVLChatModel", "SkyworkR1VChatModel", "SkyworkChatModel")  # vLLM / SGLang classes
ORIGINAL_TYPES = ("internvl_chat", "skywork_chat")
AWQ_PARTS = (".qweight", ".qzeros", ".scales", ".g_idx")


@dataclass
class Row:
    check: str
    verdict: str  # PASS | FAIL | NA
    detail: str
    blocks_convert: bool = False


def refusals(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.verdict == FAIL and r.blocks_convert]


# ---------------------------------------------------------------------------------------- weight names

def _bad_weights(path: Path, why: str) -> InputError:
    return InputError("bad_weights_file", f"The weights file {path.name} is not a safetensors file ({why}).",
                      f"权重文件 {path.name} 不是 safetensors 文件（{why}）。", detail=str(path))


def read_header(path: Path) -> dict[str, tuple]:
    """Tensor name -> shape from a ``.safetensors`` file's header; the tensors are never read."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _bad_weights(path, "shorter than 8 bytes")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER, size - 8):
            raise _bad_weights(path, f"header length {n} does not fit the file's {size} bytes")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _bad_weights(path, f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise _bad_weights(path, "header is not a JSON object")
    return {k: tuple(v.get("shape", ())) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def read_index(path: Path) -> dict[str, None]:
    try:
        data = json.loads(path.read_text())
        names = data["weight_map"]
        if not isinstance(names, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError("bad_index", f"{path.name} is not a safetensors index ({e}).",
                         f"{path.name} 不是 safetensors 索引文件（{e}）。", detail=str(path)) from None
    return dict.fromkeys(names)


def weight_shapes(path: Path) -> tuple[dict[str, tuple | None], str]:
    """(name -> shape, or None where only the index names it; where the names came from)."""
    if (path / INDEX).is_file():
        return read_index(path / INDEX), INDEX
    files = sorted(path.glob("*.safetensors"))
    files = [f for f in files if f.name != "value_head.safetensors"]
    out: dict = {}
    for f in files:
        out.update(read_header(f))
    return out, ("headers of " + ", ".join(f.name for f in files)) if files else "nothing (no index, no .safetensors)"


# ---------------------------------------------------------------------------------------- layouts

def layout(config: dict) -> str:
    """``original`` (InternVL-chat: vision_config + llm_config), ``native`` (transformers InternVL),
    ``reward`` (Qwen2.5-VL reward backbone) or ``unknown``."""
    if "llm_config" in config and config.get("model_type") != "internvl":
        return "original"
    if config.get("model_type") == "internvl":
        return "native"
    if config.get("model_type") == "qwen2_5_vl":
        return "reward"
    return "unknown"


def llm_config(config: dict) -> dict:
    return config.get("llm_config") or config.get("text_config") or {}


def architecture_rows(config: dict) -> list[Row]:
    kind, archs, mt = layout(config), config.get("architectures") or [], config.get("model_type")
    seen = f"architectures={archs}, model_type={mt!r}"
    if kind == "original":
        llm = llm_config(config)
        ok = any(a in ORIGINAL_ARCHS for a in archs) and mt in ORIGINAL_TYPES
        llm_ok = "Qwen2ForCausalLM" in (llm.get("architectures") or ["Qwen2ForCausalLM"]) and \
            llm.get("model_type", "qwen2") == "qwen2"
        detail = f"{seen}; llm_config: {llm.get('architectures')}, {llm.get('model_type')!r}"
        if not llm_ok:
            return [Row("architecture", FAIL, detail + " (the converter and servers expect a Qwen2 LLM)", True)]
        if not ok:
            return [Row("architecture", FAIL, detail + f" (known: {', '.join(ORIGINAL_ARCHS)} with model_type "
                        f"{' or '.join(ORIGINAL_TYPES)}; the SGLang launch overrides it to InternVLChatModel)")]
        return [Row("architecture", PASS, detail + " (original InternVL-chat layout: converted, never its remote code)")]
    if kind == "native":
        ok = "InternVLForConditionalGeneration" in archs
        return [Row("architecture", PASS if ok else FAIL, seen + " (native transformers InternVL)", not ok)]
    if kind == "reward":
        return [Row("architecture", PASS, seen + " (Qwen2.5-VL reward backbone)")]
    return [Row("architecture", FAIL, seen + " (neither InternVL-chat, native InternVL nor Qwen2.5-VL)", True)]


# ---------------------------------------------------------------------------------------- geometry

def _vision(config: dict) -> dict:
    return config.get("vision_config") or {}


def _image_size(config: dict):
    v = _vision(config)
    size = config.get("force_image_size") or v.get("image_size", 448)
    return size[0] if isinstance(size, list) else size


def _patch(config: dict) -> int:
    p = _vision(config).get("patch_size", 14)
    return p[0] if isinstance(p, list) else p


def geometry_rows(config: dict, *, preset_tiles: int, preprocessor: dict | None = None) -> list[Row]:
    from engine.convert import PS_DEFAULT, PS_VERSIONS

    kind, v = layout(config), _vision(config)
    if kind not in ("original", "native"):
        return [Row("ps_version / select_layer / geometry", NA, f"not an InternVL checkpoint ({kind})")]
    rows = []
    ps = config.get("ps_version", PS_DEFAULT if kind == "original" else "v2")
    absent = "" if "ps_version" in config else " (absent: the config class default)"
    if ps in PS_VERSIONS:
        how = "the native class's own" if ps == "v2" else "no final permute; the converter records it and " \
            "engine.loading applies it; vLLM and SGLang serve it from the config"
        if ps == "v1" and kind == "native":
            how += "; `transformers serve` would not (engine serve refuses it)"
        rows.append(Row("ps_version", PASS, f"{ps}{absent}: {how}"))
    else:
        rows.append(Row("ps_version", FAIL, f"{ps!r}{absent}: only v1 and v2 exist", True))
    layers = v.get("num_hidden_layers")
    sl = config.get("select_layer", config.get("vision_feature_layer", -1))
    ok = isinstance(sl, int) and isinstance(layers, int) and -layers <= sl < layers
    rows.append(Row("select_layer", PASS if ok else FAIL, f"{sl} of {layers} vision layers"
                    + ("" if ok else " (out of range)"), not ok))
    size, patch, ratio = _image_size(config), _patch(config), config.get("downsample_ratio", 0.5)
    grid = size / patch if patch else 0
    tokens = grid * grid * ratio * ratio if isinstance(ratio, int | float) else 0
    ok = grid == int(grid) and 0 < ratio <= 1 and grid * ratio == int(grid * ratio) and tokens > 0
    rows.append(Row("downsample_ratio", PASS if ok else FAIL,
                    f"{ratio}: {int(grid)}x{int(grid)} patches -> {tokens:g} tokens per tile"
                    + ("" if ok else " (the pixel shuffle needs a whole grid)"), not ok))
    pre = _preprocessor_size(preprocessor)
    ok = isinstance(size, int) and size % patch == 0 and (pre is None or pre == size)
    rows.append(Row("image size", PASS if ok else FAIL, f"{size} px tiles of {patch} px patches"
                    + ("" if pre is None else f"; preprocessor: {pre} px")
                    + ("" if ok else " (they must agree and divide)"), not (isinstance(size, int) and size % patch == 0)))
    mdp = config.get("max_dynamic_patch")
    if kind == "native":
        rows.append(Row("max_dynamic_patch", NA, "native layout: the processor's max_patches says it"))
    elif mdp is None:
        rows.append(Row("max_dynamic_patch", PASS, f"absent (class default 6); the converter writes the preset's "
                        f"{preset_tiles}"))
    elif isinstance(mdp, int) and mdp >= 1:
        note = "" if mdp == preset_tiles else f"; the preset asks for {preset_tiles} tiles (the converter keeps {mdp})"
        rows.append(Row("max_dynamic_patch", PASS, f"{mdp}{note}"))
    else:
        rows.append(Row("max_dynamic_patch", FAIL, f"{mdp!r} (must be a positive integer)", True))
    return rows


def _preprocessor_size(pre: dict | None):
    if not pre:
        return None
    pre = pre.get("image_processor", pre)
    for key in ("crop_size", "size"):
        val = pre.get(key)
        if isinstance(val, int):
            return val
        if isinstance(val, dict) and ("height" in val or "shortest_edge" in val):
            return val.get("height", val.get("shortest_edge"))
    return pre.get("force_image_size") or pre.get("image_size")


# ---------------------------------------------------------------------------------------- context length

BUDGET_FIELD = "max_new_tokens"  # the preset's thinking budget (new tokens per candidate); named only here


def context_rows(config: dict, preset) -> list[Row]:
    """``max_position_embeddings`` / ``rope_scaling`` against the preset's budget plus the largest prompt
    (4 images of 13 tiles and 1024 tokens of text). Where ``engine.context`` (YaRN added at load and
    launch time) exists, its plan is what counts: the checkpoint may declare none."""
    from tutor.intake import MAX_IMAGES

    llm = llm_config(config)
    mpe, rope = llm.get("max_position_embeddings"), llm.get("rope_scaling")
    budget = getattr(preset, BUDGET_FIELD)
    if not isinstance(mpe, int):
        return [Row("context length", FAIL, f"max_position_embeddings={mpe!r} in the LLM config", True)]
    prompt = MAX_IMAGES * (preset.max_tiles + 1) * 256 + 1024
    need = prompt + budget
    usable, how = mpe, "no rope_scaling"
    if isinstance(rope, dict) and rope:
        kind = rope.get("rope_type", rope.get("type"))
        factor = rope.get("factor", 1.0)
        base = rope.get("original_max_position_embeddings", mpe)
        if kind == "yarn":
            usable, how = int(base * factor), f"YaRN factor {factor} on {base}"
        else:
            how = f"rope_scaling {kind!r} (not YaRN: counted as {mpe})"
    detail = (f"max_position_embeddings {mpe}, {how}: {usable} positions; preset {preset.name}: {BUDGET_FIELD}="
              f"{budget} + {MAX_IMAGES} images x {preset.max_tiles + 1} tiles x 256 + 1024 text = {need}")
    if usable >= need:
        return [Row("context length", PASS, detail)]
    try:
        from engine.context import plan_context  # helper "budget": YaRN added when loading / launching
    except ImportError:
        plan_context = None
    if plan_context is not None:
        try:
            plan = plan_context(llm, budget, prompt)
        except InputError as e:
            return [Row("context length", FAIL, f"{detail}; {e.message('en')}")]
        if plan.rope_scaling and plan.context >= need:
            return [Row("context length", PASS, f"{detail}; loading and the launchers add {plan.rope_scaling} "
                        f"(engine.context): {plan.context} positions")]
    return [Row("context length", FAIL, detail + " (long answers would be cut: add YaRN rope_scaling or lower the "
                "budget)")]


# ---------------------------------------------------------------------------------------- weights

def _normalise_awq(name: str) -> str | None:
    """An AWQ linear's ``qweight`` stands for its ``weight``; its zeros/scales have no native twin."""
    for part in AWQ_PARTS:
        if name.endswith(part):
            return name[: -len(part)] + ".weight" if part == ".qweight" else None
    return name


def mapped_names(config: dict, shapes: dict) -> tuple[dict, list[str], dict]:
    """(native in-memory name -> shape or None, names the converter cannot map, native -> checkpoint name)."""
    from engine import convert

    out, unmapped, origin = {}, [], {}
    kind = layout(config)
    for name, shape in shapes.items():
        norm = _normalise_awq(name)
        if norm is None:
            continue
        if norm != name:
            shape = None
        if kind == "native":
            native = convert._native_in_memory_name(norm)
            out[native], origin[native] = shape, name
            continue
        m = convert._QKV.match(norm)
        if m:
            layer, part = m.groups()
            split = None if shape is None else (shape[0] // 3, *shape[1:])
            for p in "qkv":
                native = f"model.vision_tower.encoder.layer.{layer}.attention.{p}_proj.{part}"
                out[native], origin[native] = split, name
            continue
        try:
            native = convert._to_native_name(norm)
        except KeyError:
            unmapped.append(name)
        else:
            out[native], origin[native] = shape, name
    return out, unmapped, origin


def native_config(config: dict, names):
    """The native ``InternVLConfig`` the converter would write (vision flags from ``names``)."""
    from transformers import InternVLConfig

    from engine.convert import config_to_native

    if layout(config) == "native":
        return InternVLConfig.from_dict(config)
    return config_to_native(config, 0, weight_names=names)


def native_expected(config) -> dict[str, tuple]:
    """Parameter and buffer names (with shapes) of the native class for ``config``, built on the meta
    device (no memory, no weights)."""
    import torch
    from transformers import InternVLForConditionalGeneration

    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    out = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    if config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


def compare_native(got: dict, expected: dict) -> tuple[list, list, list]:
    """(missing, unexpected, wrong shape) of ``got`` (native name -> shape or None) against ``expected``."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(f"{k} {got[k]} != {expected[k]}" for k in set(got) & set(expected)
                   if got[k] is not None and tuple(got[k]) != expected[k])
    return missing, unexpected, wrong


def _names(xs: list, n: int = 4) -> str:
    return ", ".join(xs[:n]) + (f" and {len(xs) - n} more" if len(xs) > n else "")


def flag_rows(config: dict, shapes: dict) -> list[Row]:
    from engine.convert import VISION_DEFAULTS, vision_flags

    if layout(config) != "original":
        return [Row("vision flags", NA, "only the original layout declares them apart from the tensors")]
    inferred = vision_flags(shapes)
    if all(v is None for v in inferred.values()):
        return [Row("vision flags", FAIL, "no vision_model.encoder.layers.* weights to infer them from", True)]
    v, out = _vision(config), []
    for key, default in VISION_DEFAULTS.items():
        declared = v.get(key, default)
        said = f"{declared}" if key in v else f"absent -> class default {default}"
        if declared == inferred[key]:
            out.append(f"{key}: tensors {inferred[key]}, config {said}")
        else:
            out.append(f"{key}: tensors {inferred[key]} but config {said} (the remote code, vLLM and SGLang build "
                       "from the config: random or dropped tensors; the converter follows the tensors)")
    bad = any("but config" in o for o in out)
    return [Row("vision flags", FAIL if bad else PASS, "; ".join(out))]


def weight_rows(config: dict, shapes: dict, source: str) -> list[Row]:
    """Every weight name mapped by the converter, and the native class missing none of them."""
    kind = layout(config)
    if kind not in ("original", "native"):
        return [Row("weight names", NA, f"not an InternVL checkpoint ({kind}); {len(shapes)} names")]
    if not shapes:
        return [Row("weight names", FAIL, f"no weight names found (read {source})", True)]
    got, unmapped, origin = mapped_names(config, shapes)
    rows = [Row("weights mapped", FAIL if unmapped else PASS,
                f"{len(shapes)} names from {source}; "
                + (f"the converter cannot map {len(unmapped)}: {_names(sorted(unmapped))}" if unmapped
                   else "the converter maps all"), bool(unmapped))]
    try:
        expected = native_expected(native_config(config, shapes))
    except (KeyError, TypeError, ValueError, InputError) as e:
        return rows + [Row("native class", FAIL, f"no native config from this config.json: {e}", True)]
    missing, unexpected, wrong = compare_native(got, expected)
    problems = []
    if missing:
        problems.append(f"the native class would miss {len(missing)} (random weights): {_names(missing)}")
    if unexpected:
        dropped = sorted({origin.get(n, n) for n in unexpected})
        problems.append(f"{len(dropped)} it has no place for (dropped): {_names(dropped)}")
    if wrong:
        problems.append(f"{len(wrong)} of the wrong shape: {_names(wrong, 2)}")
    shapes_seen = "names and shapes" if any(s is not None for s in got.values()) else "names (the index has no shapes)"
    rows.append(Row("native class", FAIL if problems else PASS,
                    "; ".join(problems) if problems else f"all {len(expected)} native tensors present ({shapes_seen})",
                    bool(problems)))
    return rows


AWQ_CONFIG_FILES = ("quant_config.json", "quantize_config.json")


def quantization_rows(config: dict, shapes: dict, files: set[str]) -> list[Row]:
    """Where a quantized (AWQ) build keeps its quantization config, and which engines will see it."""
    top = config.get("quantization_config")
    nested = llm_config(config).get("quantization_config")
    side = sorted(f for f in AWQ_CONFIG_FILES if f in files)
    packed = any(n.endswith(".qweight") for n in shapes)
    if not (top or nested or side or packed):
        return [Row("quantization config", PASS, "not quantized (no quantization_config, no packed weights)")]
    where = []
    if top:
        where.append(f"config.json quantization_config ({top.get('quant_method', '?')})")
    if nested:
        where.append(f"llm_config.quantization_config ({nested.get('quant_method', '?')})")
    where += side
    if not where:
        return [Row("quantization config", FAIL, "packed AWQ weights (qweight) but no quantization config anywhere: "
                    "every engine would load them as plain weights and fail", True)]
    seen = {
        "transformers": bool(top),
        "vLLM": bool(top),  # hf_config.quantization_config, then hf_config.text_config's (not llm_config)
        "SGLang": bool(top),
    }
    verdict = ", ".join(f"{k} {'sees it' if v else 'does NOT see it'}" for k, v in seen.items())
    hint = "" if top else (" (vLLM/SGLang: pass --quantization awq so they read the " + (side[0] if side else
                           "nested config") + "; the converter cannot write native AWQ)")
    return [Row("quantization config", PASS if all(seen.values()) else FAIL, f"{'; '.join(where)}: {verdict}{hint}")]


def value_head_rows(head: dict | None, hidden: int | None) -> list[Row]:
    if head is None:
        return []
    w = head.get("v_head.summary.weight", head.get("summary.weight"))
    b = head.get("v_head.summary.bias", head.get("summary.bias"))
    names = ", ".join(f"{k} {list(v)}" for k, v in sorted(head.items()))
    ok = w is not None and b is not None and tuple(w) == (1, hidden) and tuple(b) == (1,)
    return [Row("value head", PASS if ok else FAIL, f"value_head.safetensors: {names}; expected "
                f"v_head.summary.weight [1, {hidden}] + v_head.summary.bias [1]")]


def config_rows(config: dict, preset, *, preprocessor: dict | None = None) -> list[Row]:
    rows = architecture_rows(config)
    if layout(config) in ("original", "native"):
        rows += geometry_rows(config, preset_tiles=preset.max_tiles, preprocessor=preprocessor)
        rows += context_rows(config, preset)
    return rows

