"""The engine on tiny-random: batched candidates, shared prefill, streaming, stop, CLI."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from engine.core import Candidate, Delta, Engine, Finished, Sampling, choose_by_agreement
from tutor.errors import InputError
from tutor.reasoning import split_reasoning

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine(tiny_loaded):
    return Engine(loaded=tiny_loaded)


@pytest.fixture(scope="module")
def photo():
    im = Image.new("RGB", (900, 560), "white")
    ImageDraw.Draw(im).text((40, 40), "Solve: 2x + 3 = 7", fill="black")
    return im


def test_batched_greedy_equals_plain_generate(engine, photo):
    """Shared prefill + repeated cache decodes exactly what a plain generate() decodes."""
    lm = engine.lm
    sampling = Sampling(temperature=0, max_new_tokens=12, min_new_tokens=12)
    sol = engine.solve([photo], "Find x.", n=3, sampling=sampling)
    from tutor.prompts import build_messages

    text = engine.prompt_text(build_messages("solve", question="Find x.", lang="en", n_images=1))
    inputs = lm.processor(text=text, images=[photo], return_tensors="pt", max_patches=lm.max_tiles)
    with torch.inference_mode():
        ref = lm.model.generate(**inputs, do_sample=False, max_new_tokens=12, min_new_tokens=12,
                                repetition_penalty=1.05, pad_token_id=lm.tokenizer.pad_token_id)
    ref_text = lm.tokenizer.decode(ref[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    expected = split_reasoning(ref_text)
    for c in sol.candidates:
        assert (c.thinking, c.text) == (expected.thinking, expected.answer)
        assert c.tokens == 12
    assert sol.prompt_tokens == inputs["input_ids"].shape[1]


def test_vision_tower_and_prefill_run_once_for_n_candidates(engine, photo):
    calls = []
    vt = engine.lm.model.model.vision_tower
    h1 = vt.register_forward_hook(lambda m, i, o: calls.append(("vision", i[0].shape[0] if i else None)))
    lm_calls = []
    h2 = engine.lm.model.model.language_model.register_forward_hook(
        lambda m, a, kw, o: lm_calls.append(kw["inputs_embeds"].shape), with_kwargs=True)
    try:
        sol = engine.solve([photo], "Find x.", n=4, sampling=Sampling(max_new_tokens=5, min_new_tokens=5, seed=0))
    finally:
        h1.remove()
        h2.remove()
    assert len(sol.candidates) == 4
    assert len(calls) == 1  # the image tiles are encoded once, not once per candidate
    # one prefill with batch 1 over the prompt, then decoding steps over 4 rows of one token each
    assert lm_calls[0][0] == 1 and lm_calls[0][1] == sol.prompt_tokens - 1
    assert all(shape[0] == 4 and shape[1] == 1 for shape in lm_calls[1:])


def test_candidates_differ_when_sampling(engine, photo):
    sol = engine.solve([photo], "Find x.", n=4, sampling=Sampling(max_new_tokens=16, min_new_tokens=16, seed=1))
    assert len({c.thinking for c in sol.candidates}) > 1


def test_seed_makes_sampling_reproducible(engine, photo):
    s = Sampling(max_new_tokens=10, seed=7)
    a = engine.solve([photo], "Q", n=2, sampling=s)
    b = engine.solve([photo], "Q", n=2, sampling=s)
    assert [c.thinking for c in a.candidates] == [c.thinking for c in b.candidates]


def test_stream_deltas_rebuild_each_candidate(engine, photo):
    deltas, solution = {}, None
    for ev in engine.stream([photo], "Find x.", n=3, sampling=Sampling(max_new_tokens=20, seed=3)):
        if isinstance(ev, Delta):
            deltas[ev.index] = deltas.get(ev.index, "") + ev.text
        else:
            assert isinstance(ev, Finished)
            solution = ev.solution
    assert solution is not None and set(deltas) == {0, 1, 2}
    for c in solution.candidates:
        r = split_reasoning(deltas[c.index])
        assert (r.thinking, r.answer) == (c.thinking, c.text)


def test_stop_ends_generation_early(engine, photo):
    stop = threading.Event()
    seen = 0
    for ev in engine.stream([photo], "Q", n=2, sampling=Sampling(max_new_tokens=5000, min_new_tokens=5000),
                            stop=stop):
        if isinstance(ev, Delta):
            seen += 1
            if seen == 3:
                engine.stop()  # the public stop, as the app's Stop button calls it
        else:
            sol = ev.solution
    assert sol.stopped
    assert all(c.finish_reason == "stopped" and c.tokens < 100 for c in sol.candidates)


def test_no_image_question_only(engine):
    sol = engine.solve([], "What is 1+1?", n=2, sampling=Sampling(max_new_tokens=4, seed=0))
    assert len(sol.candidates) == 2 and sol.prompt_tokens > 0


@pytest.mark.parametrize("n", [0, 17, -1])
def test_n_out_of_range(engine, photo, n):
    with pytest.raises(InputError) as e:
        engine.solve([photo], "Q", n=n)
    assert e.value.code == "bad_n"


def test_max_tiles_bounds_image_tokens(engine):
    wide = Image.new("RGB", (2000, 500), "white")
    few = engine.solve([wide], "Q", n=1, sampling=Sampling(max_new_tokens=1), max_tiles=1)
    many = engine.solve([wide], "Q", n=1, sampling=Sampling(max_new_tokens=1), max_tiles=6)
    # one tile = 256 image tokens; more tiles (+ a thumbnail) = more tokens
    assert many.prompt_tokens - few.prompt_tokens >= 256 * 3


def test_choose_by_agreement_picks_the_majority():
    def c(i, ans, truncated=False):
        return Candidate(i, "t", "x", ans, 5, "stop", truncated)

    cands = [c(0, "3"), c(1, "\\frac{1}{2}"), c(2, "0.5"), c(3, ""), c(4, "3.0"), c(5, "1/2")]
    assert choose_by_agreement(cands) == 1
    assert cands[1].group == cands[2].group == cands[5].group == 0 and cands[0].group == 1
    assert choose_by_agreement([c(0, "", True), c(1, "", False)]) == 1


def test_solution_json_shape(engine, photo):
    sol = engine.solve([photo], "Q", n=2, sampling=Sampling(max_new_tokens=3, seed=0))
    data = sol.to_json()
    assert set(data) == {"answer", "chosen", "candidates", "model", "timings", "strategy", "reason", "notes"}
    assert data["notes"] == []  # what the reader should know (e.g. the reward server failed): nothing here
    assert all(set(c) == {"thinking", "text", "answer", "reward", "tokens", "group"} for c in data["candidates"])
    json.dumps(data)


def _cli(*args, env_extra=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def test_cli_solve_json_three_candidates(tiny_dir, tmp_path):
    examples = sorted((ROOT / "assets" / "examples").glob("*.jpg"))
    image = examples[0] if examples else tmp_path / "q.png"
    if not examples:
        Image.new("RGB", (600, 400), "white").save(image)
    r = _cli("solve", str(image), "--model", "tiny-random", "--n", "3", "--json", "--max-new-tokens", "8")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data["candidates"]) == 3 and data["model"] == "tiny-random" and 0 <= data["chosen"] < 3
    assert all(c["tokens"] >= 1 for c in data["candidates"])


@pytest.mark.parametrize("kind", ["missing", "empty", "corrupt", "not_image", "bad_n", "bad_preset"])
def test_cli_errors_are_one_line(tmp_path, kind):
    good = tmp_path / "good.png"
    Image.new("RGB", (300, 300), "white").save(good)
    path = tmp_path / "x.png"
    args = ["solve", str(path)]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(good.read_bytes()[:60])
    elif kind == "not_image":
        path.write_text("hello, not a picture")
    elif kind == "bad_n":
        args = ["solve", str(good), "--n", "99"]
    elif kind == "bad_preset":
        args = ["solve", str(good), "--model", "gpt-9"]
    r = _cli(*args)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
    if kind == "bad_preset":
        assert "tiny-random" in lines[0] and "r1v2-38b-nf4" in lines[0]


@pytest.mark.parametrize("model", ["tiny", "mini"])
def test_think_close_survives_decoding(tiny_loaded, model):
    """</think> is an ordinary added token in every tokenizer the project builds or ships (as in QwQ),
    so decoding with skip_special_tokens (what vLLM and the in-process engine do) keeps it and the
    reply splits into reasoning and answer. The streamer is the engine's own, fed real token ids."""
    import queue

    from engine.core import _BatchStreamer

    if model == "tiny":
        tok = tiny_loaded.processor.tokenizer
    else:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(ROOT / "assets" / "mini", trust_remote_code=False)
    assert tok.convert_tokens_to_ids("</think>") not in tok.all_special_ids
    ids = tok.encode("abc</think>def", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "abc</think>def"
    out: queue.Queue = queue.Queue()
    s = _BatchStreamer(tok, 1, {tok.convert_tokens_to_ids("<|im_end|>")}, out)
    s.put(torch.tensor([[0]]))  # the prompt
    for t in ids + [tok.convert_tokens_to_ids("<|im_end|>")]:
        s.put(torch.tensor([[t]]))
    text = ""
    while not out.empty():
        text += out.get_nowait().text
    r = split_reasoning(text)
    assert (r.thinking, r.answer, r.truncated) == ("abc", "def", False)
