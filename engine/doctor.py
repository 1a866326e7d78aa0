"""The checkpoint doctor: check the published (or a local) R1V2 checkpoint's small files against every
assumption the project makes, before any weights move.

    python -m engine doctor Skywork/Skywork-R1V2-38B [--revision R]   # hub: only the small files
    python -m engine doctor /path/to/checkpoint [--preset r1v2-38b]   # a directory: never the weights

    from engine.doctor import diagnose, table
    rows = diagnose("/path/to/checkpoint"); print(table(rows))

For a hub id it downloads only the files named in ``HUB_FILES`` that the repository lists (config,
generation config, tokenizer files, chat templates, the safetensors index, the preprocessor config,
AWQ side configs) with ``huggingface_hub.hf_hub_download``, never a weight and never a ``.py``; with
no index it reads the weights' safetensors *headers* over HTTP range requests
(``parse_safetensors_file_metadata``), and a reward checkpoint's ``value_head.safetensors`` header
the same way. For a directory it reads what is there (the index, or the safetensors headers).

One table, a verdict per row (``pass``, ``FAIL``, ``n/a``): architecture and ``model_type``; every
weight name mapped by the converter and nothing the native class would miss; vision flags from the
tensors vs the config; ``ps_version``, ``select_layer``, ``downsample_ratio``, image size,
``max_dynamic_patch``; ``rope_scaling``/``max_position_embeddings`` against the preset's budget; the
special tokens and whether ``</think>`` survives ``skip_special_tokens=True`` decoding (what vLLM does);
the checkpoint's chat template against ours on the same messages; where a quantized build keeps its
quantization config and which engines see it; a reward checkpoint's value-head names. Exit status 0
when no row fails, 1 naming each failure (2 for bad input). Nothing here runs remote code.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from engine.checkpoint_checks import (
    FAIL,
    NA,
    PASS,
    Row,
    config_rows,
    flag_rows,
    layout,
    llm_config,
    quantization_rows,
    read_header,
    value_head_rows,
    weight_rows,
    weight_shapes,
)
from tutor.errors import EngineError, InputError

HUB_FILES = (
    "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "tokenizer_config.json", "tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "tokenizer.model", "chat_template.jinja", "chat_template.json",
    "model.safetensors.index.json", "quant_config.json", "quantize_config.json",
)
VALUE_HEAD = "value_head.safetensors"
IMAGE_TOKENS = ("<IMG_CONTEXT>", "<img>", "</img>")
THINK_TOKENS = ("<think>", "</think>")
MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find x."}]}]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_files(listing) -> list[str]:
    """The files of a repository listing the doctor downloads: the small named ones, nothing else."""
    present = set(listing)
    return [f for f in HUB_FILES if f in present]


def _hub_error(repo_id: str, e: Exception) -> Exception:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(e, GatedRepoError):
        return InputError(
            "gated_repo",
            f"{repo_id} is gated: open https://huggingface.co/{repo_id}, accept its terms, then set HF_TOKEN "
            "to a token of that account.",
            f"{repo_id} 需要授权：打开 https://huggingface.co/{repo_id} 同意其条款，再把 HF_TOKEN 设为该账号的令牌。",
            detail=repr(e))
    if isinstance(e, RevisionNotFoundError):
        return InputError("unknown_revision", f"{repo_id} has no such revision.", f"{repo_id} 没有这个版本。",
                          detail=repr(e))
    if isinstance(e, RepositoryNotFoundError):
        return InputError(
            "unknown_repo", f"No hub repository {repo_id} (or it is private: set HF_TOKEN).",
            f"找不到模型仓库 {repo_id}（若为私有仓库请设置 HF_TOKEN）。", detail=repr(e))
    return EngineError("hub_unreachable", f"Could not read {repo_id} from the hub. Check the network.",
                       f"无法从模型库读取 {repo_id}，请检查网络。", detail=repr(e))


class Checkpoint:
    """The small files of one checkpoint in a local folder, plus weight names/shapes and a value head
    header read without the weights."""

    def __init__(self, folder: Path, source: str, shapes: dict, shapes_from: str, head: dict | None, files: set):
        self.folder, self.source, self.shapes, self.shapes_from = folder, source, shapes, shapes_from
        self.head, self.files = head, files

    def json(self, name: str) -> dict | None:
        path = self.folder / name
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError("bad_json", f"{name} in {self.source} is not valid JSON ({e}).",
                             f"{self.source} 中的 {name} 不是有效的 JSON（{e}）。") from None
        return data if isinstance(data, dict) else None


def from_directory(path: Path) -> Checkpoint:
    shapes, source = weight_shapes(path)
    head = read_header(path / VALUE_HEAD) if (path / VALUE_HEAD).is_file() else None
    return Checkpoint(path, str(path), shapes, source, head, {p.name for p in path.iterdir()})


def from_hub(repo_id: str, revision: str | None = None) -> Checkpoint:
    import huggingface_hub as hub

    try:
        listing = hub.list_repo_files(repo_id, revision=revision)
        wanted = hub_files(listing)
        if "config.json" not in wanted:
            raise InputError("no_config", f"{repo_id} has no config.json.", f"{repo_id} 没有 config.json。")
        paths = [Path(hub.hf_hub_download(repo_id, f, revision=revision)) for f in wanted]
        folder = paths[0].parent  # one snapshot folder holds every file of one revision
        shapes, source = {}, "model.safetensors.index.json"
        if "model.safetensors.index.json" not in wanted:
            weights = sorted(f for f in listing if f.endswith(".safetensors") and "/" not in f and f != VALUE_HEAD)
            for f in weights:
                meta = hub.parse_safetensors_file_metadata(repo_id, f, revision=revision)
                shapes.update({k: tuple(t.shape) for k, t in meta.tensors.items()})
            source = "headers of " + ", ".join(weights) if weights else "nothing (no index, no .safetensors)"
        else:
            from engine.checkpoint_checks import read_index

            shapes = read_index(folder / "model.safetensors.index.json")
        head = None
        if VALUE_HEAD in listing:
            meta = hub.parse_safetensors_file_metadata(repo_id, VALUE_HEAD, revision=revision)
            head = {k: tuple(t.shape) for k, t in meta.tensors.items()}
    except (InputError, EngineError):
        raise
    except Exception as e:  # gated, not found, offline
        raise _hub_error(repo_id, e) from e
    return Checkpoint(folder, repo_id, shapes, source, head, set(listing))


# ---------------------------------------------------------------------------------------- tokenizer rows

def _single_id(tok, token: str):
    ids = tok.encode(token, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def _eos_ids(value) -> list:
    return value if isinstance(value, list) else ([] if value is None else [value])


def tokenizer_rows(tok, config: dict, gen: dict | None) -> list[Row]:
    rows = []
    if layout(config) in ("original", "native"):
        ids = {t: _single_id(tok, t) for t in IMAGE_TOKENS}
        bad = [t for t, i in ids.items() if i is None]
        rows.append(Row("image tokens", FAIL if bad else PASS,
                        ", ".join(f"{t}={i}" for t, i in ids.items())
                        + (f" ({', '.join(bad)} not one token: the processor cannot expand images)" if bad else ""),
                        bool(bad)))
    ids = {t: _single_id(tok, t) for t in THINK_TOKENS}
    specials = set(tok.all_special_tokens) | {t.content for t in getattr(tok, "added_tokens_decoder", {}).values()
                                              if getattr(t, "special", False)}
    probe = "a</think>b"
    kept = tok.decode(tok.encode(probe, add_special_tokens=False), skip_special_tokens=True)
    survives = "</think>" in kept
    detail = ", ".join(f"{t}={i}" + (" special" if t in specials else "") for t, i in ids.items())
    detail += f"; decode({probe!r}, skip_special_tokens=True) = {kept!r}"
    if not survives:
        detail += " (</think> is lost: vLLM/SGLang skip special tokens, so replies never split into thinking " \
                  "and answer; mark it special=false)"
    bad = not survives or None in ids.values()
    rows.append(Row("think tokens", FAIL if bad else PASS, detail))
    im_end = _single_id(tok, "<|im_end|>")
    gen_eos = _eos_ids((gen or {}).get("eos_token_id"))
    llm_eos = _eos_ids(llm_config(config).get("eos_token_id", config.get("eos_token_id")))
    eos = gen_eos or llm_eos
    names = [tok.convert_ids_to_tokens(i) if isinstance(i, int) and 0 <= i < len(tok) else repr(i) for i in eos]
    ok = im_end is not None and im_end in eos
    rows.append(Row("EOS ids", PASS if ok else FAIL,
                    f"generation_config {gen_eos or 'absent'}, LLM config {llm_eos or 'absent'} = {names}; "
                    f"<|im_end|>={im_end}" + ("" if ok else " (generation would not stop at the end of a turn)")))
    return rows


# ---------------------------------------------------------------------------------------- chat template

def _render(tok, template: str) -> tuple[str, str]:
    """(rendering, how) of MESSAGES; a string-content template gets the vLLM-style inlined placeholder."""
    text = tok.apply_chat_template(MESSAGES, chat_template=template, tokenize=False, add_generation_prompt=True)
    if "'type'" in text or "Find x." not in text:
        flat = [{"role": "user", "content": "<image>\nFind x."}]
        return tok.apply_chat_template(flat, chat_template=template, tokenize=False, add_generation_prompt=True), \
            "string content"
    return text, "content parts"


def _normalise(text: str) -> str:
    return re.sub(r"(<img>)?(<IMG_CONTEXT>)+(</img>)?|<image>", "<image>", text)


def _first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"from character {i}: checkpoint {a[max(0, i - 10):i + 40]!r}, ours {b[max(0, i - 10):i + 40]!r}"


def template_rows(tok, checkpoint: Checkpoint) -> list[Row]:
    from engine.serve import CHAT_TEMPLATE

    theirs = tok.chat_template
    if not theirs and (data := checkpoint.json("chat_template.json")):
        theirs = data.get("chat_template")
    if isinstance(theirs, dict):
        theirs = theirs.get("default")
    if not theirs:
        return [Row("chat template", NA, "the checkpoint ships none; the launchers pass ours "
                    f"({CHAT_TEMPLATE.name})")]
    ours_text, _ = _render(tok, CHAT_TEMPLATE.read_text())
    try:
        theirs_text, how = _render(tok, theirs)
    except Exception as e:  # a template that does not render is a finding, not a crash
        return [Row("chat template", FAIL, f"the checkpoint's template does not render: {type(e).__name__}: {e}")]
    a, b = _normalise(theirs_text), _normalise(ours_text)
    if a == b:
        same = "identical" if theirs_text == ours_text else "identical but for the image placeholder"
        return [Row("chat template", PASS, f"checkpoint's and ours render {same} ({how})")]
    notes = []
    if "<|im_start|>system" in a and "<|im_start|>system" not in b:
        notes.append("the checkpoint's template injects a system prompt")
    if b.endswith("<think>\n") and not a.endswith("<think>\n"):
        notes.append("the checkpoint's template has no <think> pre-fill")
    notes.append(_first_difference(a, b))
    return [Row("chat template", FAIL, "the checkpoint's template differs from ours (Skywork's vLLM script serves "
                "the checkpoint's, our launchers ours): " + "; ".join(notes))]


# ---------------------------------------------------------------------------------------- the whole check

def _preset_for(source: str, name: str | None):
    from engine.presets import PRESETS, get_preset

    if name:
        return get_preset(name)
    for p in PRESETS.values():
        if p.repo_id == source and not p.quantization:
            return p
    return PRESETS["r1v2-38b"]


def load(target: str, revision: str | None = None) -> Checkpoint:
    path = Path(target).expanduser()
    if path.is_dir():
        return from_directory(path)
    if _HUB_ID.match(target) and not path.exists():
        return from_hub(target, revision)
    raise InputError("no_checkpoint", f"{target} is neither a checkpoint directory nor a hub id (owner/name).",
                     f"{target} 既不是模型目录，也不是模型库 ID（owner/name）。")


def diagnose(target: str, *, revision: str | None = None, preset: str | None = None) -> list[Row]:
    from engine.convert import load_tokenizer

    ckpt = load(target, revision)
    config = ckpt.json("config.json")
    if config is None:
        return [Row("config.json", FAIL, f"{ckpt.source} has no config.json", True)]
    p = _preset_for(ckpt.source, preset)
    rows = config_rows(config, p, preprocessor=ckpt.json("preprocessor_config.json")
                       or ckpt.json("processor_config.json"))
    rows += weight_rows(config, ckpt.shapes, ckpt.shapes_from) + flag_rows(config, ckpt.shapes)
    try:
        tok = load_tokenizer(ckpt.folder)
    except InputError as e:
        rows.append(Row("tokenizer", FAIL, e.message("en"), True))
    else:
        if layout(config) == "reward":  # it scores whole responses with its own template: no turn rows
            rows.append(Row("tokenizer", PASS, f"{type(tok).__name__}, {len(tok)} tokens, no remote code"))
        else:
            rows += tokenizer_rows(tok, config, ckpt.json("generation_config.json"))
            rows += template_rows(tok, ckpt)
    rows += quantization_rows(config, ckpt.shapes, ckpt.files)
    if layout(config) == "reward" or ckpt.head is not None:
        hidden = llm_config(config).get("hidden_size", config.get("hidden_size"))
        rows += value_head_rows(ckpt.head, hidden) or [Row("value head", FAIL, f"no {VALUE_HEAD}")]
    return rows


def preflight(target: str, *, revision: str | None = None, preset: str | None = None,
              action: str = "download") -> list[Row]:
    """The doctor before a download or conversion: raise on any row after which the checkpoint would
    load wrong (``blocks_convert``); return all rows otherwise."""
    from engine.convert import refuse

    rows = diagnose(target, revision=revision, preset=preset)
    refuse(rows, target, action)
    return rows


def table(rows: list[Row]) -> str:
    width = max(len(r.check) for r in rows)
    return "\n".join(f"{r.check:<{width}}  {r.verdict:<4}  {r.detail}" for r in rows)


def add_arguments(p) -> None:
    p.add_argument("target", metavar="REPO_ID_OR_DIR", help="hub id (owner/name) or checkpoint directory")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--preset", default=None, help="preset whose budget and tiles to check against "
                   "(default: the preset of this repository, else r1v2-38b)")


def run(args) -> int:
    rows = diagnose(args.target, revision=args.revision, preset=args.preset)
    print(table(rows))
    failed = [r.check for r in rows if r.verdict == FAIL]
    if failed:
        print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"doctor: all {sum(r.verdict == PASS for r in rows)} checks passed", file=sys.stderr)
    return 0

