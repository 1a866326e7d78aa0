"""Training data: JSONL records with images, checked line by line, and collation into model batches.

One JSON object per line; image paths are relative to the JSONL file. The prompt is built by
``tutor.prompts`` (the same words the app sends), from either the tutor fields or ready messages::

    {"images": ["img/q1.jpg"], "question": "求 f(x) 的最小值", "subject": "math",
     "problem_type": "free_response", "lang": "zh", "mode": "solve",          # -> build_messages(...)
     "response": "...reasoning...</think>\\n\\n答案是 \\boxed{2}"}              # sft
     "chosen": "...", "rejected": "...", "margin": 1.0                          # mpo / reward pairs
     "answer": "2", "answer_kind": "auto"                                       # grpo prompts (gold)
    {"images": [...], "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", ...}]}], ...}

Responses continue the assistant turn after the ``<think>\\n`` pre-fill (R1V2's format), so they hold
the reasoning, ``</think>`` and the answer; ``<|im_end|>`` is appended and trained on.

``load_records(path, kind)`` validates every line and raises ``InputError`` naming the file and line.
``Collator`` turns records into batches: the processor expands each image into its tiles' context
tokens; the response is cut at its end when the sequence is too long, and a prompt that alone does
not fit is refused: image tokens are never cut, so "image features and image tokens do not match"
cannot happen (it is also checked per row). ``demo_dataset(dir)`` writes small sft / pairs / prompts
files from the shipped example problems, for the tiny recipes and the tests.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tutor.errors import InputError
from tutor.prompts import MODES, build_messages, render_text_prompt

log = logging.getLogger(__name__)

KINDS = ("sft", "pairs", "prompts")
IGNORE = -100
RESPONSE_END = "<|im_end|>"


@dataclass(eq=False)  # hashed by identity: the collator caches encoded prompts per record
class Record:
    """One checked training record. ``messages`` is the prompt (user turn(s)) in tutor's format."""

    line: int
    source: str
    images: list[Path]
    messages: list[dict]
    response: str = ""
    chosen: str = ""
    rejected: str = ""
    margin: float = 0.0
    answer: str = ""
    answer_kind: str = "auto"
    meta: dict[str, Any] = field(default_factory=dict)

    def prompt_text(self) -> str:
        """The ChatML prompt exactly as tutor renders it (``<image>\\n`` per image, ``<think>`` pre-fill)."""
        return render_text_prompt(self.messages)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def _bad_line(path: Path, line: int, en: str, zh: str) -> InputError:
    return InputError("bad_training_record", f"{path}, line {line}: {en}", f"{path} 第 {line} 行：{zh}")


def _text(obj: dict, key: str, path: Path, line: int, required: bool) -> str:
    v = obj.get(key, "")
    if not isinstance(v, str) or (required and not v.strip()):
        raise _bad_line(path, line, f"'{key}' must be a non-empty string.", f"“{key}”必须是非空字符串。")
    return v


def _messages(obj: dict, n_images: int, path: Path, line: int) -> list[dict]:
    if "messages" in obj:
        msgs = obj["messages"]
        ok = isinstance(msgs, list) and msgs and all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant") and "content" in m for m in msgs)
        if not ok or msgs[-1]["role"] != "user":
            raise _bad_line(path, line, "'messages' must be a list of user/assistant turns ending with a user turn.",
                            "“messages”必须是以用户轮结尾的 user/assistant 对话列表。")
        n = sum(1 for m in msgs if isinstance(m["content"], list)
                for p in m["content"] if isinstance(p, dict) and p.get("type") == "image")
        if n != n_images:
            raise _bad_line(path, line, f"the messages have {n} image parts but 'images' lists {n_images} files.",
                            f"messages 中有 {n} 个图片位置，但 images 列出了 {n_images} 个文件。")
        return msgs
    mode = obj.get("mode", "solve")
    if mode not in MODES:
        raise _bad_line(path, line, f"unknown mode {mode!r}.", f"未知的模式 {mode!r}。")
    kw = {k: obj[k] for k in ("question", "subject", "problem_type", "lang", "hint_level", "student_answer",
                              "reference") if k in obj}
    try:
        return build_messages(mode, n_images=n_images, **kw)
    except InputError as e:
        raise _bad_line(path, line, e.message("en"), e.message("zh")) from e


def parse_record(obj: Any, kind: str, path: Path, line: int) -> Record:
    """Check one decoded JSON object as a record of ``kind`` (sft, pairs, prompts)."""
    if not isinstance(obj, dict):
        raise _bad_line(path, line, "each line must be a JSON object.", "每一行必须是一个 JSON 对象。")
    imgs = obj.get("images", [])
    if isinstance(imgs, str):
        imgs = [imgs]
    if not isinstance(imgs, list) or not all(isinstance(i, str) and i for i in imgs):
        raise _bad_line(path, line, "'images' must be a list of file paths.", "“images”必须是文件路径列表。")
    images = [(path.parent / i).resolve() for i in imgs]
    for i, p in zip(imgs, images, strict=True):
        if not p.is_file():
            raise _bad_line(path, line, f"image not found: {i} (paths are relative to the JSONL file).",
                            f"找不到图片：{i}（路径相对于 JSONL 文件）。")
    rec = Record(line=line, source=str(path), images=images, messages=_messages(obj, len(images), path, line))
    if kind == "sft":
        rec.response = _text(obj, "response", path, line, True)
    elif kind == "pairs":
        rec.chosen = _text(obj, "chosen", path, line, True)
        rec.rejected = _text(obj, "rejected", path, line, True)
        m = obj.get("margin", 0.0)
        if isinstance(m, bool) or not isinstance(m, int | float):
            raise _bad_line(path, line, "'margin' must be a number.", "“margin”必须是数字。")
        rec.margin = float(m)
    elif kind == "prompts":
        ans = obj.get("answer")
        if isinstance(ans, list) and ans and all(isinstance(a, str) for a in ans):
            ans = "; ".join(ans)
        if not isinstance(ans, str) or not ans.strip():
            raise _bad_line(path, line, "'answer' (the gold answer) must be a non-empty string or list of strings.",
                            "“answer”（标准答案）必须是非空字符串或字符串列表。")
        rec.answer = ans
        rec.answer_kind = str(obj.get("answer_kind", "auto"))
    else:
        raise ValueError(f"unknown record kind {kind!r}; use one of {KINDS}")
    rec.meta = {k: obj[k] for k in ("id", "subject", "lang", "statement") if k in obj}
    return rec


def load_records(path: str | Path, kind: str) -> list[Record]:
    """Read and check a JSONL file; blank lines are skipped; the first bad line raises InputError."""
    p = Path(path)
    if not p.is_file():
        raise InputError("data_missing", f"Training data not found: {p}", f"找不到训练数据：{p}")
    out: list[Record] = []
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _bad_line(p, n, f"not valid JSON ({e.msg}).", f"不是合法的 JSON（{e.msg}）。") from e
        out.append(parse_record(obj, kind, p, n))
    if not out:
        raise InputError("data_empty", f"No records in {p}.", f"{p} 中没有数据。")
    return out


# ------------------------------------------------------------------------------------------ collation


@dataclass
class Encoded:
    """A prompt encoded by the processor: token ids and its images' tiles."""

    ids: list[int]
    pixel_values: Any  # torch tensor (tiles, 3, H, W) or None
    image_tokens: int


class Collator:
    """Records -> padded model batches (torch tensors). Never cuts image tokens."""

    def __init__(self, processor, *, max_length: int = 2048, max_tiles: int = 1, cache_size: int = 256):
        self.processor = processor
        self.tok = processor.tokenizer
        self.max_length = max_length
        self.max_tiles = max_tiles
        self.pad_id = self.tok.pad_token_id
        self.image_token_id = self.tok.convert_tokens_to_ids(processor.image_token)
        self.image_seq_length = int(processor.image_seq_length)
        self.encode_prompt = lru_cache(maxsize=cache_size)(self._encode_prompt)  # keyed by record identity

    def _encode_prompt(self, rec: Record) -> Encoded:
        from PIL import Image

        text = rec.prompt_text().replace("<image>", self.processor.image_token)
        images = []
        for p in rec.images:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        enc = self.processor(text=text, images=images or None, return_tensors="pt", max_patches=self.max_tiles)
        ids = enc["input_ids"][0].tolist()
        pv = enc.get("pixel_values")
        n_img = sum(1 for t in ids if t == self.image_token_id)
        expected = 0 if pv is None else pv.shape[0] * self.image_seq_length
        if n_img != expected:
            raise InputError("image_token_mismatch",
                             f"{rec.where}: {n_img} image tokens for {expected} image features.",
                             f"{rec.where}：图片 token 数 {n_img} 与图片特征数 {expected} 不一致。")
        if len(ids) >= self.max_length:
            raise InputError(
                "prompt_too_long",
                f"{rec.where}: the prompt takes {len(ids)} tokens ({n_img} of them for images), which leaves no "
                f"room for a response within max_length={self.max_length}. Raise max_length or lower max_tiles; "
                "image tokens are never cut.",
                f"{rec.where}：提示占 {len(ids)} 个 token（其中图片 {n_img} 个），在 max_length={self.max_length} "
                "内没有留给回答的空间。请调大 max_length 或调小 max_tiles；图片 token 不会被截断。")
        return Encoded(ids, pv, n_img)

    def response_ids(self, text: str, *, add_end: bool = True) -> list[int]:
        return self.tok(text + (RESPONSE_END if add_end else ""), add_special_tokens=False)["input_ids"]

    def _rows(self, prompts: list[Encoded], responses: list[list[int]]) -> dict:
        """Right-padded rows of prompt + response; labels only on the response."""
        import torch

        rows, labels = [], []
        for enc, resp in zip(prompts, responses, strict=True):
            room = self.max_length - len(enc.ids)
            if len(resp) > room:
                log.debug("response cut from %d to %d tokens to fit max_length", len(resp), room)
                resp = resp[:room]
            rows.append(enc.ids + resp)
            labels.append([IGNORE] * len(enc.ids) + resp)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        lab = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (r, lb) in enumerate(zip(rows, labels, strict=True)):
            input_ids[i, : len(r)] = torch.tensor(r)
            lab[i, : len(lb)] = torch.tensor(lb)
            mask[i, : len(r)] = 1
        pvs = [e.pixel_values for e in prompts if e.pixel_values is not None]
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": lab}
        if pvs:
            batch["pixel_values"] = torch.cat(pvs)
        return batch

    def sft(self, records: list[Record]) -> dict:
        return self._rows([self.encode_prompt(r) for r in records], [self.response_ids(r.response) for r in records])

    def pairs(self, records: list[Record]) -> dict:
        """Rows 0..B-1 are prompt+chosen, rows B..2B-1 prompt+rejected; ``margin`` per pair."""
        import torch

        enc = [self.encode_prompt(r) for r in records]
        resp = [self.response_ids(r.chosen) for r in records] + [self.response_ids(r.rejected) for r in records]
        batch = self._rows(enc + enc, resp)
        batch["margin"] = torch.tensor([r.margin for r in records], dtype=torch.float32)
        return batch

    def completions(self, records: list[Record], completion_ids: list[list[int]]) -> dict:
        """Rows of prompt + generated ids (already ending with EOS when the sample stopped)."""
        return self._rows([self.encode_prompt(r) for r in records], completion_ids)

    def generation_inputs(self, records: list[Record]) -> dict:
        """Left-padded prompts for ``generate``."""
        import torch

        enc = [self.encode_prompt(r) for r in records]
        width = max(len(e.ids) for e in enc)
        ids = torch.full((len(enc), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, width - len(e.ids):] = torch.tensor(e.ids)
            mask[i, width - len(e.ids):] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        pvs = [e.pixel_values for e in enc if e.pixel_values is not None]
        if pvs:
            out["pixel_values"] = torch.cat(pvs)
        return out


# ------------------------------------------------------------------------------------------ sampling


def batch_indices(step: int, batch_size: int, n: int, seed: int, rank: int = 0, world: int = 1) -> list[int]:
    """Record indices of micro-batch ``step`` for process ``rank``: a fresh seeded permutation per epoch.

    A pure function of its arguments, so a resumed run picks up the data order exactly where it stopped.
    """
    per_step = batch_size * world
    out = []
    for k in range(per_step * step, per_step * (step + 1)):
        epoch, pos = divmod(k, n)
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        out.append(order[pos])
    return out[rank * batch_size:(rank + 1) * batch_size]


# ------------------------------------------------------------------------------------------ demo data


def _wrong(gold: str, rng: random.Random) -> str:
    if len(gold) <= 4 and gold.isalpha() and gold.isupper():
        letters = [c for c in "ABCD" if c not in gold]
        return rng.choice(letters) if letters else "A"
    return gold + "+1"


def demo_dataset(out_dir: str | Path, *, size: int = 8, seed: int = 0) -> dict[str, Path]:
    """Write ``sft.jsonl``, ``pairs.jsonl`` and ``prompts.jsonl`` from the shipped example problems.

    The responses are made up in R1V2's format (short reasoning, ``</think>``, boxed answer): the
    chosen one has the gold answer, the rejected one a wrong answer. Images are copied next to the
    files, so paths are relative. Returns ``{"sft": path, "pairs": path, "prompts": path}``.
    """
    import shutil

    from tutor.examples import load_examples

    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    examples = load_examples()[:size]
    rows: dict[str, list[dict]] = {"sft": [], "pairs": [], "prompts": []}
    for ex in examples:
        img = f"images/{ex.image_path.name}"
        if not (out / img).exists():
            shutil.copyfile(ex.image_path, out / img)
        base = {"id": ex.id, "images": [img], "question": ex.question, "subject": ex.subject,
                "problem_type": ex.problem_type, "lang": ex.lang, "mode": "solve"}
        boxes = "".join(f"\\boxed{{{a}}}" for a in (ex.answer if isinstance(ex.answer, list) else [ex.answer]))
        good = f"Read the problem and work it out step by step.</think>\n\nThe answer is {boxes}."
        bad = f"Guess quickly.</think>\n\nThe answer is \\boxed{{{_wrong(ex.gold, rng)}}}."
        rows["sft"].append({**base, "response": good})
        rows["pairs"].append({**base, "chosen": good, "rejected": bad, "margin": 1.0})
        rows["prompts"].append({**base, "answer": ex.answer})
    paths = {}
    for kind, items in rows.items():
        p = out / f"{kind}.jsonl"
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")
        paths[kind] = p
    return paths


def resolve_data(cfg, kind: str) -> list[Record]:
    """The records of a run: ``cfg.data``, or the demo set (written under output_dir) when empty."""
    if cfg.data:
        return load_records(cfg.data, kind)
    key = {"sft": "sft", "pairs": "pairs", "prompts": "prompts"}[kind]
    paths = demo_dataset(Path(cfg.output_dir) / "demo-data", size=cfg.demo_size, seed=cfg.seed)
    return load_records(paths[key], kind)


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
