"""Where reading breaks between Mini-R1V's vision tower and its LM: probes on a run's stage-0 parts.

    python -m training.mini.probe head data/mini-long              # a fresh reading head, frozen tower (600 steps)
    python -m training.mini.probe lm data/mini-long                # stage-0 LM + a fresh adapter (900 steps)
    python -m training.mini.probe lm data/mini-long --lm frozen    # adapter only (R1V2's adapter stage)
    python -m training.mini.probe lm data/mini-long --lm scratch   # a random LM of the same shape
    python -m training.mini.probe reward assets/mini/reward        # right vs changed-answer solutions
    python -m training.mini.probe text data/mini-long              # the stage-0 LM on typed-in problems
    python -m training.mini.probe patch data/mini-long             # glyphs under each patch, linear probe

The head and LM probes read the same thing: the statement of a training photo from the tower's
pixel-shuffled tokens (frozen, computed once), trained on ``--train`` photos and measured on 200 val
photos every ``--every`` steps. They print one JSON line per measurement with the *teacher-forced*
accuracy over the statement's characters/tokens, over its digits alone (a digit is one token for the
LM as for the head, so that column compares the two directly), and the share of statements with
every position right. The head also reports its greedy reading, as stage 0 does.

The head is ``stage0.ReadingHead`` (a 2-layer cross-attention decoder). The LM probe is the InternVL
path in miniature: ``<img>`` + adapter(tokens) + ``</img>`` + the restatement prefix of R1V2's
format (``Problem: ``/``题目：``) and the statement, loss on the statement; the adapter is InternVL's
``mlp1`` shape (LayerNorm -> Linear -> GELU -> Linear). Nothing is saved: these are measurements.
The reward probe scores right worked solutions against the same ones with the boxed answer changed.
The patch probe asks the frozen tower what it recognises before any reading: a linear layer on each
patch's output, trained to name the character under the patch centre (the layout saved with the
photos), scored on val patches with a digit and with other text.
The text probe asks the stage-0 LM (``RUN/llm``, or an LM directory) to solve problems typed in
(``stage0.lm_scores``): its accuracy by kind and how often it restates the problem exactly, the copy a
photo's reading must also make.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from training.mini import stage0, tasks


@torch.no_grad()
def features(vision, images_u8: torch.Tensor, ratio: float = 0.5, batch: int = 64) -> torch.Tensor:
    """The adapter's input for every photo: (N, tokens, dim), as ``stage0.shuffled_tokens``."""
    vision.eval()
    return torch.cat([stage0.shuffled_tokens(vision, stage0.normalize(images_u8[i:i + batch]), ratio)
                      for i in range(0, len(images_u8), batch)])


def _load(run: Path, train: int):
    from transformers import InternVLVisionModel

    vision = InternVLVisionModel.from_pretrained(run / "vision")
    tr_u8, tr = stage0.load_images(run / "data" / "train.jsonl", limit=train)
    va_u8, va = stage0.load_images(run / "data" / "val.jsonl", limit=200)
    return features(vision, tr_u8), tr, features(vision, va_u8), va


def _scores(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, digit: torch.Tensor) -> dict:
    ok = pred == y
    return {"accuracy": round(float((ok & mask).sum() / mask.sum()), 4),
            "digit_accuracy": round(float((ok & digit).sum() / digit.sum()), 4),
            "exact": round(float((ok | ~mask).all(-1).float().mean()), 4)}


def probe_head(run: Path, *, steps: int = 600, train: int = 3000, every: int = 150, lr: float = 1e-3,
               seed: int = 0, log=print) -> list[dict]:
    """A fresh ``ReadingHead`` on the frozen tower's tokens."""
    torch.manual_seed(seed)
    ftr, tr, fva, va = _load(run, train)
    chars = sorted({c for r in tr for c in r["statement"]})
    charset = {c: i + 3 for i, c in enumerate(chars)}
    ytr = stage0.encode_text([r["statement"] for r in tr], charset)
    yva = stage0.encode_text([r["statement"] for r in va], charset)
    digits = torch.tensor([charset[d] for d in "0123456789" if d in charset])
    head = stage0.ReadingHead(ftr.shape[-1], len(charset) + 3, tokens=ftr.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    rows, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(ftr), (32,), generator=gen)
        logits = head(ftr[idx], ytr[idx])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), ytr[idx].flatten(), ignore_index=stage0.PAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            head.eval()
            with torch.no_grad():
                forced = head(fva, yva).argmax(-1)
                greedy = head.read(fva)
            head.train()
            mask = yva != stage0.PAD
            digit = mask & torch.isin(yva, digits)
            g = _scores(greedy, yva, mask, digit)
            rows.append({"probe": "head", "step": step, "loss": round(loss.item(), 4),
                         **_scores(forced, yva, mask, digit),
                         "greedy_accuracy": g["accuracy"], "greedy_exact": g["exact"],
                         "time_s": round(time.perf_counter() - t0, 1)})
            log(json.dumps(rows[-1]))
    return rows


def probe_lm(run: Path, *, lm: str = "pretrained", steps: int = 900, train: int = 3000, every: int = 150,
             lr: float = 1e-3, adapter_lr: float = 3e-3, seed: int = 0, log=print) -> list[dict]:
    """The stage-0 LM (``pretrained``; ``frozen``: only the adapter learns; ``scratch``: a random LM of
    the same config) reading the frozen tower's tokens through a fresh adapter."""
    from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM

    torch.manual_seed(seed)
    ftr, tr, fva, va = _load(run, train)
    tok = AutoTokenizer.from_pretrained(run / "llm", trust_remote_code=False)
    model = (Qwen2ForCausalLM(AutoConfig.from_pretrained(run / "llm", trust_remote_code=False)) if lm == "scratch"
             else Qwen2ForCausalLM.from_pretrained(run / "llm"))
    hidden = model.config.hidden_size
    adapter = nn.Sequential(nn.LayerNorm(ftr.shape[-1]), nn.Linear(ftr.shape[-1], hidden), nn.GELU(),
                            nn.Linear(hidden, hidden))
    emb = model.get_input_embeddings()
    img = [tok.convert_tokens_to_ids(t) for t in ("<img>", "</img>")]
    n_img = ftr.shape[1] + 2

    def encode(recs):
        out = []
        for r in recs:
            prefix = "<|im_start|>assistant\n<think>\n" + tasks.restatement_prefix(r["lang"])
            out.append((tok(prefix)["input_ids"], tok(r["statement"] + "\n")["input_ids"]))
        return out

    def batch(f, rows):
        width = max(len(p) + len(s) for p, s in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        labels = torch.full((len(rows), n_img + width), -100)
        att = torch.zeros(len(rows), n_img + width, dtype=torch.long)
        for i, (p, s) in enumerate(rows):
            ids[i, :len(p) + len(s)] = torch.tensor(p + s)
            att[i, :n_img + len(p) + len(s)] = 1
            labels[i, n_img + len(p):n_img + len(p) + len(s)] = torch.tensor(s)
        b = len(rows)
        x = torch.cat([emb(torch.full((b, 1), img[0])), adapter(f), emb(torch.full((b, 1), img[1])), emb(ids)], 1)
        return x, att, labels

    rtr, rva = encode(tr), encode(va)
    groups = [{"params": list(adapter.parameters()), "lr": adapter_lr}]
    if lm == "frozen":
        model.requires_grad_(False)
    else:
        groups.append({"params": list(model.parameters()), "lr": lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    params = [p for g in groups for p in g["params"]]
    digits = torch.tensor(tok.convert_tokens_to_ids(list("0123456789")))
    gen = torch.Generator().manual_seed(seed)
    rows, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(ftr), (32,), generator=gen)
        x, att, labels = batch(ftr[idx], [rtr[i] for i in idx])
        loss = model(inputs_embeds=x, attention_mask=att, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % every == 0 or step == steps:
            with torch.no_grad():
                x, att, labels = batch(fva, rva)
                pred = model(inputs_embeds=x, attention_mask=att).logits[:, :-1].argmax(-1)
            y = labels[:, 1:]
            mask = y != -100
            rows.append({"probe": f"lm ({lm})", "step": step, "loss": round(loss.item(), 4),
                         **_scores(pred, y, mask, mask & torch.isin(y, digits)),
                         "time_s": round(time.perf_counter() - t0, 1)})
            log(json.dumps(rows[-1]))
    return rows


@torch.no_grad()
def reward_preference(reward_dir: str | Path, *, problems: int = 60, seed: int = 4) -> dict:
    """How often a reward model scores a right worked solution above the same solution with its boxed
    answer changed (the value + 3), on held-out-style photos of free-response problems."""
    import random
    import tempfile

    from transformers import AutoProcessor

    from training.data import Collator, Record
    from training.reward import RewardModel
    from tutor.answers import equivalent, extract_final
    from tutor.prompts import build_messages

    rm = RewardModel.from_pretrained(reward_dir).eval()
    collator = Collator(AutoProcessor.from_pretrained(reward_dir, trust_remote_code=False), max_length=512, max_tiles=1)
    rng, wins = random.Random(seed), 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(problems):
            p = tasks.make_problem(rng, choice=False)
            img = Path(tmp) / f"{i}.png"
            tasks.render(p, random.Random(i), split="test").save(img)
            rec = Record(line=i, source="probe", images=[img], messages=build_messages(
                "solve", question="", problem_type=p.problem_type, lang=p.lang, n_images=1))
            wrong = p.solution.replace(f"\\boxed{{{p.answer}}}",
                                       f"\\boxed{{{int(p.meta['value'].split('/')[0]) + 3}}}")
            assert not equivalent(p.answer, extract_final(wrong))
            b = collator.completions([rec, rec], [collator.response_ids(p.solution), collator.response_ids(wrong)])
            s = rm(b["input_ids"], b["attention_mask"], b["pixel_values"])
            wins += int(s[0] > s[1])
    return {"probe": "reward", "reward_model": str(reward_dir), "problems": problems, "right_preferred": wins,
            "share": round(wins / max(problems, 1), 4)}


def probe_patches(run: Path, *, train: int = 2000, steps: int = 1500, seed: int = 0) -> dict:
    """A linear probe on the frozen tower's patch outputs (196 per photo, before the pixel shuffle):
    the character under each patch centre, from ``data/{split}.layout.npy``."""
    import numpy as np
    from transformers import InternVLVisionModel

    torch.manual_seed(seed)
    vision = InternVLVisionModel.from_pretrained(run / "vision")
    data = run / "data"
    feats, labels = {}, {}
    for split, limit in (("train", train), ("val", 200)):
        u8, _ = stage0.load_images(data / f"{split}.jsonl", limit=limit)
        feats[split] = features(vision, u8, ratio=1.0).flatten(0, 1)
        labels[split] = torch.from_numpy(np.load(data / f"{split}.layout.npy")[:len(u8)]).long().flatten()
    linear = nn.Linear(feats["train"].shape[-1], len(tasks.CHARSET) + 1)
    opt = torch.optim.Adam(linear.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(labels["train"]), (4096,), generator=gen)
        loss = nn.functional.cross_entropy(linear(feats["train"][idx]), labels["train"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        ok = linear(feats["val"]).argmax(-1) == labels["val"]
    is_digit = torch.tensor([False] + [c.isdigit() for c in tasks.CHARSET])[labels["val"]]
    text = labels["val"] > 0
    return {"probe": "patch", "run": str(run), "val_patches_with_text": int(text.sum()),
            "digit_patches": round(float(ok[is_digit].float().mean()), 4),
            "other_text_patches": round(float(ok[text & ~is_digit].float().mean()), 4),
            "paper_patches": round(float(ok[~text].float().mean()), 4)}


def probe_text(llm_dir: Path, *, count: int = 120, full: bool = True) -> dict:
    """The stage-0 LM given ``count`` problems as text (``stage0.lm_scores``, greedy)."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(llm_dir, trust_remote_code=False)
    model = Qwen2ForCausalLM.from_pretrained(llm_dir)
    t0 = time.perf_counter()
    scores = stage0.lm_scores(model, tok, count, full=full, max_new_tokens=160)
    return {"probe": "text", "llm": str(llm_dir), "prompt": "full" if full else "short", "problems": count,
            "accuracy": round(scores["accuracy"], 4), "copied": round(scores["copied"], 4),
            "by_kind": scores["by_kind"], "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.mini.probe", description=__doc__.split("\n")[0])
    ap.add_argument("probe", choices=("head", "lm", "reward", "text", "patch"))
    ap.add_argument("run", help="a training.mini output directory (with data/, vision/, llm/); "
                    "for `reward`, a reward model directory")
    ap.add_argument("--lm", default="pretrained", choices=("pretrained", "frozen", "scratch"))
    ap.add_argument("--steps", type=int, default=None, help="default: 600 for head, 900 for lm, 1500 for patch")
    ap.add_argument("--train", type=int, default=None, help="training photos, their features cached "
                    "(default: 3000 for head and lm, 2000 for patch)")
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--problems", type=int, default=None, help="reward: right vs changed-answer pairs (60); "
                    "text: problems typed in (120)")
    ap.add_argument("--prompt", default="full", choices=("full", "short"),
                    help="text: the tutor's whole prompt, or the bare problem in a user turn")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    if args.probe == "reward":
        if not (run / "value_head.safetensors").exists():
            raise SystemExit(f"{run}: not a reward model (no value_head.safetensors)")
        print(json.dumps(reward_preference(run, problems=args.problems or 60)))
        return 0
    if args.probe == "text":
        llm = run / "llm" if (run / "llm").is_dir() else run
        if not (llm / "config.json").exists():
            raise SystemExit(f"{run}: no stage-0 LM there (neither {run}/llm nor an LM directory)")
        print(json.dumps(probe_text(llm, count=args.problems or 120, full=args.prompt == "full"),
                         ensure_ascii=False))
        return 0
    for part in ("vision", "data/train.jsonl") + (("llm",) if args.probe == "lm" else ()):
        if not (run / part).exists():
            raise SystemExit(f"{run}: no {part} (run `python -m training.mini --out {run}` first)")
    # each probe's own defaults where the command leaves --steps / --train out
    given = {k: v for k, v in (("steps", args.steps), ("train", args.train)) if v is not None}
    if args.probe == "patch":
        if not (run / "data" / "val.layout.npy").exists():
            raise SystemExit(f"{run}: no data/val.layout.npy (photos rendered with their layouts)")
        print(json.dumps(probe_patches(run, **given)))
        return 0
    if args.probe == "head":
        probe_head(run, every=args.every, **given)
    else:
        probe_lm(run, lm=args.lm, every=args.every, **given)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
