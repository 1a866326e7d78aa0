"""Stage 0 of Mini-R1V: the parts, pretrained separately before assembly (as R1V2 starts from a
pretrained InternViT and a pretrained reasoning LM).

    from training.mini import stage0
    tok = stage0.train_tokenizer()                                   # BPE on the task corpus
    stage0.pretrain_vision("runs/mini/data", "runs/mini/vision", steps=600)   # reads the photos
    stage0.pretrain_lm(tok, "runs/mini/llm", steps=800)              # solves problems given as text

- Tokenizer: byte-level BPE with single-digit pre-tokenization (as Qwen2's), trained on the
  task corpus (prompts rendered by ``tutor.prompts`` + worked solutions), carrying the R1V2 special
  tokens of ``engine.tiny`` (ChatML, image tokens, ``<think>``/``</think>``) and its chat template.
- Vision tower: a native ``InternVLVisionModel`` (InternViT-300M style: LayerNorm, qkv bias) at
  224 px with 16 px patches (196 patches, 49 tokens after InternVL's 0.5 pixel shuffle), trained
  to *read* the rendered problem: a small head of learned per-position character queries
  cross-attends over the 49 pixel-shuffled tokens (the very features the adapter will see) and
  predicts the statement character by character. FACTS.md: trained end to end from scratch the
  image features stay uninformative; trained alone the tower learns to read quickly.
- Language model: a native ``Qwen2ForCausalLM`` trained on text-only conversations: the tutor's
  prompt with the problem typed in, and the worked solution in R1V2's format as the response; and,
  in 30% of the batches, drills of the arithmetic facts those solutions use (``drill_fact``).

Every function is deterministic from its seed and logs its loss curve; both return their metrics.
Both parts train on CUDA when there is one (``pick_device``; ``--device`` overrides), else on the
CPU, where every timing in the report card was measured.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.tiny import IMAGENET_MEAN, IMAGENET_STD
from training.mini import tasks
from training.runs import pick_device
from tutor.prompts import build_messages, render_text_prompt

log = logging.getLogger(__name__)

MAX_CHARS = 48
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
PAD, UNK = 0, 1
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)  # the processor's (engine.tiny.build_processor)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------ tokenizer


def text_prompt(p: tasks.Problem, *, with_image: bool) -> str:
    """The tutor's prompt for ``p``: the photo (``<image>``) or the problem typed in (text only)."""
    if with_image:
        msgs = build_messages("solve", question="", subject="math", problem_type=p.problem_type, lang=p.lang,
                              n_images=1)
    else:
        msgs = build_messages("solve", question=p.statement, subject="math", problem_type=p.problem_type,
                              lang=p.lang, n_images=0)
    return render_text_prompt(msgs)


def lm_prompt(p: tasks.Problem, full: bool) -> str:
    """The LM's pretraining prompt: the tutor's full text-only prompt (``full``), or the bare problem
    in a user turn (a pretrained LM has seen worked solutions, not our tutor's instructions; the short
    turn makes a step about 2x cheaper)."""
    if full:
        return text_prompt(p, with_image=False)
    return f"<|im_start|>user\n{p.statement}<|im_end|>\n<|im_start|>assistant\n<think>\n"


def corpus(count: int = 3000, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        p = tasks.make_problem(rng)
        out.append(text_prompt(p, with_image=rng.random() < 0.5) + p.solution + "<|im_end|>")
    return out


def train_tokenizer(vocab_size: int = 1024, seed: int = 11):
    """BPE (digits split one by one) with the R1V2 special tokens and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from engine.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS, THINK_TOKENS

    tok = Tokenizer(models.BPE())
    # Qwen2's own pre-tokenizer (digits one by one): transformers reloads a tokenizer saved next to a
    # Qwen2 config as ``Qwen2Tokenizer``, which imposes exactly this split, so train with it too.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + THINK_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(seed=seed), trainer=trainer)
    # <think>/</think> stay in the vocabulary as single tokens but are not "special": decoding with
    # skip_special_tokens keeps them (as QwQ's tokenizer does), so the engine can split the reasoning.
    spec = json.loads(tok.to_str())
    for added in spec["added_tokens"]:
        if added["content"] in THINK_TOKENS:
            added["special"] = False
    tok = Tokenizer.from_str(json.dumps(spec))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                              "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    fast.chat_template = CHAT_TEMPLATE
    return fast


# ------------------------------------------------------------------------------------ vision


def vision_config(image_size: int = tasks.IMAGE_SIZE, patch: int = 16, hidden: int = 128, layers: int = 4):
    from transformers import InternVLVisionConfig

    return InternVLVisionConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                intermediate_size=hidden * 2, use_qk_norm=False, norm_type="layer_norm",
                                attention_bias=True, image_size=image_size, patch_size=patch,
                                use_mean_pooling=True, layer_scale_init_value=0.1)


def shuffled_tokens(vision: nn.Module, pixel_values: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """What InternVL's adapter sees: last hidden state, CLS dropped, pixel shuffle at ``ratio``
    (0.5: 196 patches -> (B, 49, 4h); 1.0: the 196 patches themselves, (B, 196, h))."""
    return _shuffle(vision(pixel_values=pixel_values).last_hidden_state[:, 1:, :], ratio)


def _shuffle(feats: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    from transformers.models.internvl.modeling_internvl import InternVLModel

    if ratio == 1.0:
        return feats
    b, n, h = feats.shape
    side = int(n ** 0.5)
    feats = InternVLModel.pixel_shuffle(None, feats.reshape(b, side, side, h), scale_factor=ratio)
    return feats.reshape(b, -1, feats.shape[-1])


class ReadingHead(nn.Module):
    """A small autoregressive text decoder over the pixel-shuffled tokens (teacher-forced in
    training, greedy when measuring): it reads the statement left to right as the LM will, each
    character found next to the one before wherever the text sits in the photo."""

    def __init__(self, in_dim: int, n_chars: int, dim: int = 192, max_chars: int = MAX_CHARS, tokens: int = 49,
                 layers: int = 2):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.pos = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.embed = nn.Embedding(n_chars, dim)
        self.qpos = nn.Parameter(torch.randn(max_chars, dim) * 0.02)
        layer = nn.TransformerDecoderLayer(dim, 4, dim * 2, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, n_chars)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(max_chars), persistent=False)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, L, C]`` for each position given the characters before it (BOS = ``PAD``)."""
        memory = self.proj(tokens) + self.pos
        prev = torch.cat([torch.full_like(targets[:, :1], PAD), targets[:, :-1]], dim=1)
        n = prev.shape[1]
        h = self.embed(prev) + self.qpos[:n]
        return self.out(self.norm(self.decoder(h, memory, tgt_mask=self.causal[:n, :n], tgt_is_causal=True)))

    @torch.no_grad()
    def read(self, tokens: torch.Tensor, length: int = MAX_CHARS) -> torch.Tensor:
        """Greedy reading ``[B, length]``."""
        out = torch.full((tokens.shape[0], length), PAD, dtype=torch.long, device=tokens.device)
        for i in range(length):
            out[:, i] = self.forward(tokens, out[:, : i + 1])[:, i].argmax(-1)
        return out


def load_images(jsonl: Path, limit: int | None = None) -> tuple[torch.Tensor, list[dict]]:
    """uint8 images (N, 3, 224, 224) and their records."""
    import numpy as np
    from PIL import Image

    recs = [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines() if x.strip()][:limit]
    arr = np.stack([np.asarray(Image.open(jsonl.parent / r["images"][0]).convert("RGB")) for r in recs])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), recs


def normalize(u8: torch.Tensor) -> torch.Tensor:
    """uint8 tiles -> the processor's pixel values (ImageNet mean/std; the tile is already 224 px), on
    the tiles' device."""
    return (u8.float() / 255.0 - MEAN.to(u8.device)) / STD.to(u8.device)


def encode_text(texts: list[str], charset: dict[str, int]) -> torch.Tensor:
    out = torch.full((len(texts), MAX_CHARS), PAD, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = [charset.get(c, UNK) for c in t[:MAX_CHARS - 1]] + [2]  # 2 = end of text
        out[i, : len(ids)] = torch.tensor(ids)
    return out


@torch.no_grad()
def read_accuracy(vision: nn.Module, head: ReadingHead, images_u8: torch.Tensor, y: torch.Tensor,
                  ratio: float = 0.5) -> tuple[float, float]:
    """(character accuracy, share of statements read exactly) of greedy reading."""
    was = vision.training
    vision.eval()
    head.eval()
    dev = next(vision.parameters()).device
    pred = torch.cat([head.read(shuffled_tokens(vision, normalize(images_u8[i:i + 50].to(dev)), ratio)).cpu()
                      for i in range(0, len(images_u8), 50)])
    vision.train(was)
    head.train(was)
    mask = y != PAD
    char_acc = float(((pred == y) & mask).sum() / mask.sum())
    exact = float(((pred == y) | ~mask).all(-1).float().mean())
    return char_acc, exact


def pretrain_vision(data_dir: str | Path, out_dir: str | Path, *, steps: int = 600, batch: int = 32,
                    lr: float = 1e-3, seed: int = 0, time_budget_s: float | None = None,
                    init: str | Path | None = None, eval_every: int = 0, ratio: float = 0.5,
                    layout_weight: float = 1.0, device: str | None = None) -> dict:
    """Train the vision tower + reading head on train.jsonl; report character/exact accuracy on val.
    The head reads the tokens the adapter will see at the assembly's pixel-shuffle ``ratio``;
    ``layout_weight`` scales the per-patch layout loss against the reading loss. ``device``: see
    ``pick_device`` (the photos stay in CPU memory; each batch moves).

    Saves the tower alone (``save_pretrained``: a native ``InternVLVisionModel``) to ``out_dir``."""
    from transformers import InternVLVisionModel

    data_dir, out = Path(data_dir), Path(out_dir)
    torch.manual_seed(seed)
    train_u8, train_recs = load_images(data_dir / "train.jsonl")
    val_u8, val_recs = load_images(data_dir / "val.jsonl", limit=200)
    chars = sorted({c for r in train_recs for c in r["statement"]})
    charset = {c: i + 3 for i, c in enumerate(chars)}  # 0 pad, 1 unk, 2 end
    y_train = encode_text([r["statement"] for r in train_recs], charset)
    y_val = encode_text([r["statement"] for r in val_recs], charset)
    vision = InternVLVisionModel.from_pretrained(init) if init else InternVLVisionModel(vision_config())
    per = round(1 / ratio) ** 2  # patches per adapter token
    head = ReadingHead(per * vision.config.hidden_size, len(charset) + 3,
                       tokens=(vision.config.image_size[0] // vision.config.patch_size[0]) ** 2 // per)
    # dense supervision: the character under each patch centre, from the patch's own output (local, so
    # glyph features are learned in a few hundred steps; the reading head alone plateaus for long)
    layouts = torch.from_numpy(np.load(data_dir / "train.layout.npy")).long().flatten(1)
    dense = nn.Linear(vision.config.hidden_size, len(tasks.CHARSET) + 1)
    dev = pick_device(device)
    vision, head, dense = vision.to(dev), head.to(dev), dense.to(dev)
    params = list(vision.parameters()) + list(head.parameters()) + list(dense.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed if init is None else seed + 1)  # a continued run: another order
    curve, t0 = [], time.perf_counter()
    done = 0
    for step in range(steps):
        idx = torch.randint(0, len(train_u8), (batch,), generator=gen)
        y = y_train[idx].to(dev)
        feats = vision(pixel_values=normalize(train_u8[idx].to(dev))).last_hidden_state[:, 1:, :]
        logits = head(_shuffle(feats, ratio), y)
        read_loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD)
        dense_loss = nn.functional.cross_entropy(dense(feats).flatten(0, 1), layouts[idx].reshape(-1).to(dev))
        loss = read_loss + layout_weight * dense_loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        done = step + 1
        if step % 25 == 0 or step == steps - 1:
            curve.append({"step": step + 1, "loss": round(loss.item(), 4), "read_loss": round(read_loss.item(), 4),
                          "layout_loss": round(dense_loss.item(), 4), "time_s": round(time.perf_counter() - t0, 1)})
            log.info("vision step %d loss %.4f (reading %.4f, layout %.4f)", step + 1, loss.item(), read_loss.item(),
                     dense_loss.item())
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            c, e = read_accuracy(vision, head, val_u8[:100], y_val[:100], ratio)
            curve.append({"step": step + 1, "val_char_accuracy": round(c, 4), "val_exact_read": round(e, 4)})
            log.info("vision step %d: val char accuracy %.3f, exact %.3f", step + 1, c, e)
        if time_budget_s and time.perf_counter() - t0 > time_budget_s:
            log.warning("vision pretraining stopped by its time budget at step %d", step + 1)
            break
    char_acc, exact = read_accuracy(vision, head, val_u8, y_val, ratio)
    out.mkdir(parents=True, exist_ok=True)
    vision.save_pretrained(out)
    metrics = {"steps": done, "val_char_accuracy": round(char_acc, 4), "val_exact_read": round(exact, 4),
               "wall_s": round(time.perf_counter() - t0, 1), "device": str(dev), "curve": curve}
    (out / "stage0_metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("vision: val char accuracy %.3f, exact %.3f", char_acc, exact)
    return metrics


# ------------------------------------------------------------------------------------ language model


def lm_config(tokenizer, hidden: int = 192, layers: int = 4):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                       num_hidden_layers=layers, num_attention_heads=hidden // 32, num_key_value_heads=2,
                       max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=None,
                       eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                       pad_token_id=tokenizer.pad_token_id, rope_theta=10000.0)


def drill_fact(rng: random.Random) -> tuple[str, str]:
    """One arithmetic fact the task family's solutions use, written as they write it: ``("7+8+1=", "16")``.

    A pretrained reasoning LM knows its tables; ours must learn them, and a whole solution carries only
    two or three facts among the copying (the first run's LM, 1700 steps without drills, got facts such
    as 18+5 wrong). A drill row carries 16, only their results labelled. Measured: the LM continued for
    3000 steps with drills knows all 200 facts probed (``assets/mini/runs/long``); no run of the same
    length without drills was made, so their share of that is not separated out. From scratch, 1700
    steps with 30 % drill batches reached 17 % text-only accuracy (facts 66 %) against 25 % without
    (the first run: same seed and budget); end to end that run was no worse (val 16.0 % vs 13.3 %,
    within the noise of 150 problems; ``assets/mini/runs/v4``), so the recipe keeps them."""
    kind = rng.randrange(5)
    if kind == 0:  # a column of an addition (tasks._add), also a fraction's numerators
        da, db, carry = rng.randrange(10), rng.randrange(10), rng.random() < 0.4
        return f"{da}+{db}" + ("+1" if carry else "") + "=", str(da + db + carry)
    a, k, b = rng.randint(2, 9), rng.randint(1, 9), rng.randint(1, 9)
    if kind == 1:  # evaluating a function (tasks._function)
        return f"{a}×{k}+{b}=", f"{a * k}+{b}={a * k + b}"
    if kind == 2:  # the two steps of a linear equation (tasks._linear)
        c = a * k + b
        return f"{c}-{b}=", f"{c - b}"
    if kind == 3:
        return f"{a * k}÷{a}=", str(k)
    d = rng.randint(3, 9)  # simplifying a fraction's sum (tasks._fraction)
    s = rng.choice([v for v in range(2, 2 * d - 1) if math.gcd(v, d) > 1])  # the sums that simplify
    g = math.gcd(s, d)
    return f"{s}/{d}=", str(s // g) if d // g == 1 else f"{s // g}/{d // g}"


def _drill_row(tokenizer, rng: random.Random, facts: int) -> tuple[list[int], list[int]]:
    """``facts`` drills on lines; only the results are labelled (the left-hand sides are random)."""
    ids, labels = [], []
    for _ in range(facts):
        lhs, rhs = drill_fact(rng)
        a = tokenizer(lhs, add_special_tokens=False)["input_ids"]
        b = tokenizer(rhs + "\n", add_special_tokens=False)["input_ids"]
        ids += a + b
        labels += [-100] * len(a) + b
    return ids, labels


def _drill_batch(tokenizer, rng: random.Random, batch: int) -> dict:
    return _padded(tokenizer, *zip(*(_drill_row(tokenizer, rng, 16) for _ in range(batch)), strict=True))


def _lm_batch(tokenizer, problems: list[tasks.Problem], full: bool) -> dict:
    rows, labels = [], []
    for p in problems:
        prompt = tokenizer(lm_prompt(p, full), add_special_tokens=False)["input_ids"]
        resp = tokenizer(p.solution + "<|im_end|>", add_special_tokens=False)["input_ids"]
        rows.append(prompt + resp)
        labels.append([-100] * len(prompt) + resp)
    return _padded(tokenizer, rows, labels)


def _padded(tokenizer, rows, labels) -> dict:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    lab = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lb) in enumerate(zip(rows, labels, strict=True)):
        ids[i, : len(r)], lab[i, : len(lb)], mask[i, : len(r)] = torch.tensor(r), torch.tensor(lb), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


@torch.no_grad()
def lm_scores(model, tokenizer, count: int = 100, seed: int = 99, max_new_tokens: int = 120, *,
              full: bool = True) -> dict:
    """Greedy text-only solving of ``count`` fresh problems (answers checked by ``tutor.answers``):
    ``accuracy``; ``copied``, the share whose reply restates the problem exactly (the copy every worked
    solution starts with; judged by ``tutor.drills.restated``, as a photo's reading is); and the accuracy of each
    kind, ``"add"`` .. ``"function-mc"``. ``full``: the tutor's whole prompt, else the short one
    (``lm_prompt``)."""
    from tutor.answers import accuracy_reward
    from tutor.drills import restated

    rng = random.Random(seed)
    probs = [tasks.make_problem(rng) for _ in range(count)]
    tokenizer.padding_side = "left"
    enc = tokenizer([lm_prompt(p, full) for p in probs], return_tensors="pt", padding=True,
                    add_special_tokens=False).to(model.device)
    was = model.training
    model.eval()
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                         pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    tokenizer.padding_side = "right"
    model.train(was)
    right = [r or 0.0 for r in accuracy_reward(texts, [f"\\boxed{{{p.answer}}}" for p in probs])]
    copied = [restated(t) == p.statement for p, t in zip(probs, texts, strict=True)]  # as a photo's reading
    kinds: dict[str, list[float]] = {}
    for p, r in zip(probs, right, strict=True):
        kinds.setdefault(p.kind + ("-mc" if p.choice else ""), []).append(r)
    return {"accuracy": sum(right) / count, "copied": sum(copied) / count,
            "by_kind": {k: round(sum(v) / len(v), 4) for k, v in sorted(kinds.items())}}


@torch.no_grad()
def fact_accuracy(model, tokenizer, count: int = 200, seed: int = 123) -> float:
    """Greedy accuracy on single drilled facts (``drill_fact``), each after three others as context."""
    rng = random.Random(seed)
    right = 0
    for _ in range(count):
        context = "".join(a + b + "\n" for a, b in (drill_fact(rng) for _ in range(3)))
        lhs, rhs = drill_fact(rng)
        enc = tokenizer(context + lhs, return_tensors="pt", add_special_tokens=False).to(model.device)
        out = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        right += tokenizer.decode(out[0, enc["input_ids"].shape[1]:]).split("\n")[0] == rhs
    return right / count


def pretrain_lm(tokenizer, out_dir: str | Path, *, steps: int = 800, batch: int = 32, lr: float = 2e-3,
                seed: int = 0, time_budget_s: float | None = None, init: str | Path | None = None,
                eval_every: int = 0, full_share: float = 0.25, drill_share: float = 0.3, eval_count: int = 100,
                device: str | None = None) -> dict:
    """Train the Qwen2 LM on text-only worked solutions (fresh problems every step); save it with
    its tokenizer to ``out_dir``; return metrics including greedy text-only accuracy (``lm_scores`` on
    ``eval_count`` problems) and fact accuracy (on twice as many facts)."""
    from transformers import Qwen2ForCausalLM

    out = Path(out_dir)
    torch.manual_seed(seed)
    model = (Qwen2ForCausalLM.from_pretrained(init) if init else Qwen2ForCausalLM(lm_config(tokenizer))).train()
    dev = pick_device(device)
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    rng = random.Random(seed + 5 if init is None else f"{seed}-{init}")  # a continued run sees new problems
    curve, t0, done = [], time.perf_counter(), 0
    for step in range(steps):
        # a quarter of the batches carry the tutor's full prompt, so its instructions are not new at SFT
        # (whole batches, not rows: mixed rows would pad every row to the long prompt)
        full = rng.random() < full_share
        drill = rng.random() < drill_share  # whole batches of arithmetic drills (see drill_fact)
        problems = [tasks.make_problem(rng) for _ in range(batch)]  # drawn either way: one random stream
        inputs = _drill_batch(tokenizer, rng, batch) if drill else _lm_batch(tokenizer, problems, full)
        loss = model(**{k: v.to(dev) for k, v in inputs.items()}).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        done = step + 1
        if step % 25 == 0 or step == steps - 1:
            curve.append({"step": step + 1, "loss": round(loss.item(), 4), "time_s": round(time.perf_counter() - t0, 1)})
            log.info("lm step %d loss %.4f", step + 1, loss.item())
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            curve.append({"step": step + 1, "text_only_greedy_accuracy": lm_scores(model, tokenizer, 50)["accuracy"]})
            log.info("lm step %d text-only greedy accuracy %.2f", step + 1, curve[-1]["text_only_greedy_accuracy"])
        if time_budget_s and time.perf_counter() - t0 > time_budget_s:
            log.warning("LM pretraining stopped by its time budget at step %d", step + 1)
            break
    scores = lm_scores(model, tokenizer, eval_count)
    acc = scores["accuracy"]
    facts = fact_accuracy(model.eval(), tokenizer, 2 * eval_count)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    from transformers import AutoTokenizer

    probe = text_prompt(tasks.make_problem(random.Random(1), lang="en"), with_image=True) + "f(4)=2×4+3=11"
    if AutoTokenizer.from_pretrained(out, trust_remote_code=False)(probe)["input_ids"] != tokenizer(probe)["input_ids"]:
        raise RuntimeError("the saved tokenizer does not reload to the same tokenization")
    metrics = {"steps": done, "text_only_greedy_accuracy": round(acc, 4), "fact_accuracy": round(facts, 4),
               "restatement_copied": round(scores["copied"], 4), "text_only_by_kind": scores["by_kind"],
               "wall_s": round(time.perf_counter() - t0, 1), "device": str(dev), "curve": curve}
    (out / "stage0_metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("lm: text-only greedy accuracy %.3f", acc)
    return metrics


def parser():
    """The command line of one stage-0 part (the driver's commands are parsed by it)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m training.mini.stage0",
                                 description="Pretrain one stage-0 part of Mini-R1V, as python -m training.mini runs it.")
    ap.add_argument("part", choices=("lm", "vision"))
    ap.add_argument("out", help="the run directory (reads OUT/data, writes OUT/llm or OUT/vision)")
    ap.add_argument("steps", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("init", nargs="?", default=None, help="continue from this earlier part")
    ap.add_argument("--layout-weight", type=float, default=1.0, help="vision: weight of the per-patch layout loss")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when there is one)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``python -m training.mini.stage0 lm|vision OUT STEPS SEED [INIT] [--layout-weight W] [--device D]``."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    every = args.steps // 4 if args.steps >= 100 else 0
    if args.part == "lm":
        tok = train_tokenizer(vocab_size=1024)
        pretrain_lm(tok, Path(args.out) / "llm", steps=args.steps, batch=16, lr=1e-3 if args.init else 3e-3,
                    seed=args.seed, init=args.init, eval_every=every, device=args.device)
    else:
        pretrain_vision(Path(args.out) / "data", Path(args.out) / "vision", steps=args.steps, batch=32, lr=2e-3,
                        seed=args.seed, init=args.init, eval_every=every, layout_weight=args.layout_weight,
                        device=args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
