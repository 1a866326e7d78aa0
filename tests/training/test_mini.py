"""Mini-R1V: the task generator (gold answers, worked solutions in R1V2's format, rendering, splits),
the recipes, the ``mini`` preset, and the shipped checkpoint reading held-out photos it never saw."""

import json
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.config import load_config
from training.mini import tasks
from tutor.answers import accuracy_reward, format_reward

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "training" / "recipes" / "mini"
ASSETS = ROOT / "assets" / "mini"


# ------------------------------------------------------------------------------------ generator


def _solve(p: tasks.Problem) -> str:
    """An independent solver of the rendered statement (not the generator's own arithmetic)."""
    import re
    from fractions import Fraction

    head = p.lines[0]
    if m := re.search(r"(\d+)\+(\d+)$", head):
        value = str(int(m[1]) + int(m[2]))
    elif m := re.search(r"(\d+)/(\d+)\+(\d+)/(\d+)$", head):
        f = Fraction(int(m[1]), int(m[2])) + Fraction(int(m[3]), int(m[4]))
        value = str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"
    elif m := re.search(r"(\d+)x\+(\d+)=(\d+)$", head):
        value = str((int(m[3]) - int(m[2])) // int(m[1]))
    else:
        m = re.search(r"f\(x\)=(\d+)x\+(\d+).*f\((\d+)\)$", head)
        value = str(int(m[1]) * int(m[3]) + int(m[2]))
    if not p.choice:
        return value
    options = dict(re.findall(r"([ABCD])\.(\S+)", p.lines[1]))
    right = [k for k, v in options.items() if v == value]
    assert len(right) == 1, (p.lines, value)  # exactly one correct option
    return right[0]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), lang=st.sampled_from(tasks.LANGS), kind=st.sampled_from(tasks.KINDS),
       choice=st.booleans())
def test_generated_problems_are_right_and_in_r1v2_format(seed, lang, kind, choice):
    p = tasks.make_problem(random.Random(seed), lang=lang, kind=kind, choice=choice)
    assert p.answer == _solve(p)
    assert accuracy_reward([p.solution], [f"\\boxed{{{p.answer}}}"]) == [1.0]
    assert format_reward([p.solution]) == [1.0]
    assert not p.solution.startswith("<think>")  # the pre-fill is the prompt's, not the response's
    assert p.statement in p.solution  # the reasoning restates what the photo shows
    assert len(p.statement) < 48  # fits the reading head of the vision tower


def test_training_problems_are_unchanged_since_the_generator_moved_to_tutor_drills():
    """The splits' problems, records and render seeds, the charset and the restatement prefixes, hashed:
    the value was computed on this module before its generator moved to ``tutor.drills``."""
    import hashlib

    h = hashlib.sha256()

    def add(p):
        d = {"kind": p.kind, "lang": p.lang, "lines": p.lines, "answer": p.answer, "solution": p.solution,
             "choice": p.choice, "meta": p.meta, "statement": p.statement, "problem_type": p.problem_type}
        h.update(json.dumps(d, ensure_ascii=False, sort_keys=True).encode() + b"\n")

    for seed in range(200):
        for lang in ("en", "zh"):
            add(tasks.make_problem(random.Random(seed), lang=lang))
            for kind in tasks.KINDS:
                for choice in (False, True):
                    add(tasks.make_problem(random.Random(seed), lang=lang, kind=kind, choice=choice))
        add(tasks.make_problem(random.Random(seed)))
    for split in ("train", "val", "test"):
        for p, r in tasks.problems(split, 200):
            add(p)
            h.update(json.dumps(tasks.record(p, "x.png"), ensure_ascii=False, sort_keys=True).encode() + str(r).encode())
    h.update(tasks.CHARSET.encode())
    h.update(tasks.restatement_prefix("en").encode() + tasks.restatement_prefix("zh").encode())
    assert h.hexdigest() == "46a02871fb546da3bf382a76aa88825faaf1d3da84e53e91841e4e0d15f9557a"


def test_a_wrong_answer_is_judged_wrong():
    p = tasks.make_problem(random.Random(5), kind="add", choice=False)
    wrong = p.solution.replace(f"\\boxed{{{p.answer}}}", f"\\boxed{{{int(p.answer) + 1}}}")
    assert accuracy_reward([wrong], [f"\\boxed{{{p.answer}}}"]) == [0.0]


def test_addition_always_carries_and_fractions_are_simplified():
    rng = random.Random(0)
    for _ in range(200):
        p = tasks.make_problem(rng, kind="add", choice=False)
        assert "carry" in p.solution or "进1" in p.solution
        f = tasks.make_problem(rng, kind="fraction", choice=False)
        if "/" in f.answer:
            n, d = map(int, f.answer.split("/"))
            import math

            assert math.gcd(n, d) == 1


def test_splits_differ_in_seed_and_rendering():
    train = tasks.problems("train", 30)
    test = tasks.problems("test", 30)
    assert {p.statement for p, _ in train}.isdisjoint({p.statement for p, _ in test}) or \
        [p.statement for p, _ in train] != [p.statement for p, _ in test]
    assert tasks.RANGES["test"] != tasks.RANGES["train"]
    assert tasks.problems("test", 5)[0][0].statement == tasks.problems("test", 5)[0][0].statement  # deterministic


def test_render_is_a_224_tile_and_depends_on_the_seed():
    import numpy as np

    p = tasks.make_problem(random.Random(1), lang="zh", choice=True)
    a = tasks.render(p, random.Random(7), split="test")
    b = tasks.render(p, random.Random(8), split="test")
    assert a.size == (tasks.IMAGE_SIZE, tasks.IMAGE_SIZE) and a.mode == "RGB"
    assert np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean() > 1.0
    assert np.asarray(a).std() > 5  # there is ink on the page


def test_photos_are_drawn_exactly_as_the_shipped_model_saw_them():
    """The four shipped example photos are held-out test photos the recipe rendered with the system
    fonts of its machine; drawn again from the fonts the repository ships, every pixel is the same."""
    import numpy as np
    from PIL import Image

    shipped = Path(__file__).resolve().parents[2] / "assets" / "mini" / "examples"
    listing = json.loads((shipped / "examples.json").read_text(encoding="utf-8"))
    index = {int(e["image"].split(".")[0]): e for e in listing}
    items = tasks.problems("test", max(index) + 1)
    for i, entry in index.items():
        p, rseed = items[i]
        assert p.statement == entry["statement"]
        ref = np.asarray(Image.open(shipped / entry["image"]).convert("RGB"))
        assert np.array_equal(np.asarray(tasks.render(p, random.Random(rseed), split="test")), ref), i


def test_photos_read_only_the_shipped_fonts(monkeypatch):
    """No system font path: every face render() opens lies in assets/fonts/ and draws every character a
    statement can show (a glyph missing from the subset would draw as a box)."""
    from fontTools.ttLib import TTFont
    from PIL import ImageFont

    from training.mini import fonts

    opened = []
    real = ImageFont.truetype
    monkeypatch.setattr(ImageFont, "truetype", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    for seed in range(40):
        p = tasks.make_problem(random.Random(seed), lang=tasks.LANGS[seed % 2])
        tasks.render(p, random.Random(seed))
    assert opened and all(Path(f).parent == fonts.FONT_DIR for f in opened), set(opened)
    rng = random.Random(123)
    for lang, faces in (("en", fonts.LATIN), ("zh", fonts.CJK)):
        needed = {c for _ in range(2000) for c in tasks.make_problem(rng, lang=lang).statement if not c.isspace()}
        for name in faces:
            cmap = TTFont(fonts.path(name))["cmap"].getBestCmap()
            assert not {c for c in needed if ord(c) not in cmap}, name


@pytest.mark.parametrize("seed", range(6))
def test_layout_marks_the_statement_characters_under_the_patches(seed):
    """The layout map names only characters of the statement, most of them, and the same photo."""
    import numpy as np

    p = tasks.make_problem(random.Random(seed), choice=seed % 2 == 0)
    photo, lay = tasks.render(p, random.Random(seed), split="train", layout=True)
    assert lay.shape == (tasks.IMAGE_SIZE // tasks.PATCH,) * 2 and lay.dtype == np.uint8
    named = {tasks.CHARSET[v - 1] for v in np.unique(lay) if v}
    shown = set(p.statement.replace(" ", ""))
    assert named <= shown and len(named) >= 0.6 * len(shown), (named, shown)
    assert np.array_equal(np.asarray(photo), np.asarray(tasks.render(p, random.Random(seed), split="train")))


def test_write_split_gives_training_records(tmp_path):
    import numpy as np

    from training.data import load_records

    path = tasks.write_split(tmp_path, "val", 3, workers=2)
    assert np.load(tmp_path / "val.layout.npy").shape == (3, 14, 14)
    assert path.read_text() == tasks.write_split(tmp_path / "one", "val", 3).read_text()  # same with 1 worker
    sft = load_records(path, "sft")
    prompts = load_records(path, "prompts")
    assert len(sft) == 3 and all(r.images[0].is_file() for r in sft)
    assert "<image>" in sft[0].prompt_text() and sft[0].prompt_text().endswith("<think>\n")
    assert prompts[0].answer == json.loads(path.read_text().splitlines()[0])["answer"]


# ------------------------------------------------------------------------------------ recipes, preset


@pytest.mark.parametrize("stage,recipe", [("assemble", "assemble"), ("sft", "sft-adapter"),
                                          ("sft", "sft-adapter-llm"), ("mpo", "mpo"), ("reward", "reward"),
                                          ("grpo", "grpo-ssb"), ("grpo", "grpo-nossb")])
def test_recipes_load(stage, recipe):
    cfg = load_config(stage, RECIPES / f"{recipe}.yaml")
    assert getattr(cfg, "max_tiles", 1) == 1


def test_grpo_recipes_differ_only_in_ssb():
    a = vars(load_config("grpo", RECIPES / "grpo-ssb.yaml"))
    b = vars(load_config("grpo", RECIPES / "grpo-nossb.yaml"))
    assert {k for k in a if a[k] != b[k]} == {"ssb", "output_dir"}


def test_mini_preset_points_at_the_shipped_checkpoint():
    from engine.loading import resolve
    from engine.presets import get_preset

    preset = get_preset("mini")
    assert preset.source == "local" and preset.max_tiles == 1
    path, _ = resolve("mini")
    assert (path / "config.json").is_file() and (path / "reward" / "value_head.safetensors").is_file()
    size = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    assert size < 30 * 2**20


# ------------------------------------------------------------------------------------ shipped model


@pytest.fixture(scope="module")
def shipped():
    from engine.loading import load_model

    return load_model("mini")


def test_shipped_mini_reads_held_out_photos(shipped, tmp_path):
    """Greedy answers to 48 fixed problems of the held-out test split (seeds and rendering ranges the
    training never used). The shipped model is weak (assets/mini/REPORT.md: about 12% right; it
    misreads digits), so the test asserts what it does do: it answers in R1V2's format; it *reads*
    the photo -- the problem it restates in its reasoning is closer to the statement in its own photo
    than to another photo's, for most photos (a model that ignored the image would win about half);
    and it is right at least as often as guessing the multiple-choice ones, with at least one
    free-response problem right."""
    import difflib

    from training.mini.evaluate import restated, sample

    path = tasks.write_split(tmp_path, "test", 48)
    groups = sample(None, path, n=1, temperature=0.0, model=shipped.model, processor=shipped.processor)
    texts = [g.texts[0] for g in groups]
    assert sum(format_reward(texts)) >= 40, texts[:3]  # R1V2 format: reasoning, </think>, \boxed{}
    statements = [json.loads(x)["statement"] for x in path.read_text(encoding="utf-8").splitlines()]

    def sim(a: str | None, b: str) -> float:
        return difflib.SequenceMatcher(None, a or "", b).ratio()

    own = [sim(restated(t), s) for t, s in zip(texts, statements, strict=True)]
    other = [sim(restated(t), statements[(i + 7) % 48]) for i, t in enumerate(texts)]
    assert sum(a > b for a, b in zip(own, other, strict=True)) >= 36, (own, other)
    assert sum(own) / 48 >= 0.45
    mc = [g for g in groups if g.record.answer in ("A", "B", "C", "D")]
    right = sum(g.correct[0] for g in groups)
    assert right >= 0.25 * len(mc), (right, len(mc))
    assert sum(g.correct[0] for g in groups if g not in mc) >= 1


def test_shipped_reward_model_prefers_the_right_solution():
    """The shipped reward model scores a right worked solution above the same one with its boxed answer
    changed, mostly (``probe.reward_preference``; on 60 problems the first run's scores 43)."""
    from training.mini import probe

    res = probe.reward_preference(ASSETS / "reward", problems=6)
    assert res["problems"] == 6 and res["right_preferred"] >= 4


# ------------------------------------------------------------------------------------ stage 0


def test_reading_head_is_causal_and_reads_greedily():
    """Logits at position i depend on the characters before i only; ``read`` returns ids."""
    import torch

    from training.mini.stage0 import MAX_CHARS, ReadingHead

    torch.manual_seed(0)
    head = ReadingHead(64, 20, dim=32).eval()
    tokens = torch.randn(2, 49, 64)
    y = torch.randint(3, 20, (2, MAX_CHARS))
    z = y.clone()
    z[:, 10:] = 3  # change everything from position 10 on
    with torch.no_grad():
        a, b = head(tokens, y), head(tokens, z)
    assert torch.allclose(a[:, :11], b[:, :11], atol=1e-5)  # position 10 sees only 0..9
    assert not torch.allclose(a[:, 11:], b[:, 11:])
    out = head.read(tokens, length=6)
    assert out.shape == (2, 6) and out.dtype == torch.long


def test_vision_pretraining_learns_and_saves_a_native_tower(tmp_path):
    """A few steps on a handful of photos: the loss terms are logged, parameters change, and the saved
    tower loads as a native ``InternVLVisionModel``."""
    import torch
    from transformers import InternVLVisionModel

    from training.mini import stage0

    tasks.write_split(tmp_path / "data", "train", 8)
    tasks.write_split(tmp_path / "data", "val", 4)
    torch.manual_seed(0)
    before = InternVLVisionModel(stage0.vision_config()).state_dict()
    metrics = stage0.pretrain_vision(tmp_path / "data", tmp_path / "vision", steps=3, batch=4, seed=0,
                                     layout_weight=3.0)
    assert metrics["steps"] == 3 and {"read_loss", "layout_loss"} <= set(metrics["curve"][0])
    for row in metrics["curve"]:  # the layout loss enters at its weight
        assert row["loss"] == pytest.approx(row["read_loss"] + 3.0 * row["layout_loss"], abs=2e-3)
    assert 0.0 <= metrics["val_char_accuracy"] <= 1.0
    after = InternVLVisionModel.from_pretrained(tmp_path / "vision").state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2


@pytest.mark.gpu
def test_stage0_parts_train_on_cuda(tmp_path):
    """On a GPU machine both parts train there, and what they save reloads on the CPU."""
    import torch
    from transformers import InternVLVisionModel, Qwen2ForCausalLM

    from training.mini import stage0

    assert torch.cuda.is_available()
    tasks.write_split(tmp_path / "data", "train", 8)
    tasks.write_split(tmp_path / "data", "val", 4)
    vision = stage0.pretrain_vision(tmp_path / "data", tmp_path / "vision", steps=3, batch=4, seed=0)
    lm = stage0.pretrain_lm(stage0.train_tokenizer(vocab_size=400), tmp_path / "llm", steps=3, batch=4, seed=0,
                            eval_count=4)
    assert vision["device"].startswith("cuda") and lm["device"].startswith("cuda")
    InternVLVisionModel.from_pretrained(tmp_path / "vision")
    Qwen2ForCausalLM.from_pretrained(tmp_path / "llm")


def test_lm_pretraining_learns_and_reports_solving_and_copying(tmp_path):
    """A few steps of the stage-0 LM: parameters change, the saved LM reloads with its tokenizer, and
    its metrics split text-only solving by kind and say how often it restated the problem exactly."""
    import torch
    from transformers import Qwen2ForCausalLM

    from training.mini import stage0

    tok = stage0.train_tokenizer(vocab_size=400)
    torch.manual_seed(0)
    before = Qwen2ForCausalLM(stage0.lm_config(tok)).state_dict()
    metrics = stage0.pretrain_lm(tok, tmp_path / "llm", steps=3, batch=4, seed=0, eval_count=6)
    assert metrics["steps"] == 3 and [c["step"] for c in metrics["curve"]] == [1, 3]
    assert metrics["device"] == str(stage0.pick_device())
    after = Qwen2ForCausalLM.from_pretrained(tmp_path / "llm").state_dict()
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2
    assert metrics["restatement_copied"] == 0.0  # three steps do not teach copying
    assert 0.0 <= metrics["text_only_greedy_accuracy"] <= 1.0
    assert set(metrics["text_only_by_kind"]) <= {k + mc for k in tasks.KINDS for mc in ("", "-mc")}


def test_drill_facts_are_true_and_written_as_the_solutions_write_them():
    """Every drill is a true equation, and each kind of step the worked solutions take is drilled in
    the same notation (so what the drills teach is what the solutions need)."""
    import math
    import re
    from fractions import Fraction

    from training.mini.stage0 import drill_fact

    rng = random.Random(0)
    shapes = set()
    for _ in range(600):
        lhs, rhs = drill_fact(rng)
        assert lhs.endswith("=") and rhs
        chain = (lhs + rhs).split("=")
        values = [Fraction(eval(part.replace("×", "*").replace("÷", "/"))) for part in chain]  # noqa: S307
        assert len(set(values)) == 1, lhs + rhs
        if "/" in lhs and "÷" not in lhs:  # a fraction's sum, simplified: lowest terms
            n, _, d = rhs.partition("/")
            assert math.gcd(int(n), int(d or 1)) == 1
        shapes.add(re.sub(r"\d+", "N", lhs))
    steps = set()
    for _ in range(300):
        p = tasks.make_problem(rng)
        for m in re.finditer(r"\d[\d+\-×÷/]*[+\-×÷/]\d+=", p.solution):
            steps.add(re.sub(r"\d+", "N", m.group(0)))
    assert {"N+N=", "N+N+N=", "N-N=", "N÷N=", "N/N=", "N×N+N="} <= shapes
    assert steps - {"N/N+N/N="} <= shapes | {"N×N="}, steps - shapes


def _stage0_recorder(calls: list, *, steps: int, wall_s: float):
    """A stand-in for ``Driver.parallel`` at stage 0: records the commands and writes what the two
    parts would write (their metrics), without training them."""
    def parallel(self, jobs):
        calls.append(jobs)
        for name in ("llm", "vision"):
            (self.out / name).mkdir(exist_ok=True)
            (self.out / name / "stage0_metrics.json").write_text(json.dumps({"steps": steps, "wall_s": wall_s}))
        return {k: wall_s for k in jobs}

    return parallel


def test_driver_continues_parts_from_an_earlier_run(tmp_path, monkeypatch):
    """``--parts-from``: the earlier run's data is reused (linked, not re-rendered), stage 0 starts from
    its parts, and the steps and time of both runs are added up in the report."""
    from training.mini import __main__ as mini

    old = tmp_path / "old"
    tasks.write_split(old / "data", "train", 4)
    for name, steps, wall in (("llm", 100, 60.0), ("vision", 50, 40.0)):
        (old / name).mkdir()
        (old / name / "stage0_metrics.json").write_text(json.dumps({"steps": steps, "wall_s": wall}))
    (old / "report.json").write_text(json.dumps({"stages": {"data": {"wall_s": 5.0}}}))
    calls = []
    monkeypatch.setattr(mini.Driver, "parallel", _stage0_recorder(calls, steps=7, wall_s=3.0))
    out = tmp_path / "new"
    mini.main(["--out", str(out), "--parts-from", str(old), "--to-stage", "stage0"])
    assert (out / "data").is_symlink() and (out / "data").resolve() == (old / "data").resolve()
    (cmds,) = calls
    assert cmds["stage0-lm"][-1] == str(old / "llm") and cmds["stage0-vision"][-1] == str(old / "vision")
    report = json.loads((out / "report.json").read_text())
    assert report["stage0_continued"]["prior_wall_s"] == 5.0 + 60.0
    assert report["stages"]["stage0"]["lm"]["total_steps"] == 107
    assert json.loads((out / "vision" / "stage0_metrics.json").read_text())["total_steps"] == 57


def test_driver_passes_the_layout_weight_to_the_vision_part_only(tmp_path, monkeypatch):
    """``--layout-weight`` reaches the vision part's command, which the stage-0 CLI parses back; the
    default recipe's commands stay as they were (no flag)."""
    from training.mini import __main__ as mini
    from training.mini import stage0

    calls = []
    monkeypatch.setattr(mini.Driver, "parallel", _stage0_recorder(calls, steps=1, wall_s=1.0))
    small = ["--train-size", "2", "--eval-size", "2", "--threads", "1", "--to-stage", "stage0"]
    mini.main(["--out", str(tmp_path / "a"), *small, "--layout-weight", "3"])
    mini.main(["--out", str(tmp_path / "b"), *small])
    weighted, default = calls
    args = stage0.parser().parse_args(weighted["stage0-vision"][3:])
    assert (args.part, args.steps, args.layout_weight) == ("vision", 900, 3.0)
    assert stage0.parser().parse_args(weighted["stage0-lm"][3:]).layout_weight == 1.0
    assert not any("--layout-weight" in c for cmd in default.values() for c in cmd)


def test_reading_splits_the_error_into_reading_and_solving():
    """``evaluate.reading`` compares the restated problem with the photo's statement."""
    from types import SimpleNamespace

    from training.mini.evaluate import Group, reading

    p = tasks.make_problem(random.Random(3), lang="en", kind="add", choice=False)
    wrong_read = p.solution.replace(p.statement, p.statement[:-1] + "0", 1)
    rec = SimpleNamespace(meta={"statement": p.statement})
    g = Group(rec, [p.solution, wrong_read, "no restatement"], [1, 1, 1], [True] * 3, [1.0, 0.0, 0.0])
    r = reading([g])
    assert r["exact_read"] == round(1 / 3, 4)
    assert r["accuracy_when_read_exactly"] == 1.0 and r["accuracy_otherwise"] == 0.0
    assert 0.3 < r["similarity"] < 0.7


def test_driver_resumes_with_the_kept_stages_commands_and_time(tmp_path, monkeypatch):
    """``--from-stage sft`` on an earlier run: the commands of sft and later stages are dropped (they are
    run again), and the recipe's time restarts from when sft began, not from the old total."""
    from training.mini import __main__ as mini

    out = tmp_path / "run"
    out.mkdir()
    cmds = ["python -m training.mini.stage0 lm x 5 0", "python -m training assemble --config a.yaml",
            "python -m training sft --config s.yaml", "python -m training grpo --config g.yaml"]
    (out / "report.json").write_text(json.dumps({"seed": 0, "stages": {}, "commands": cmds, "total_wall_s": 900.0,
                                                 "stage_start_s": {"sft": 300.0, "grpo": 700.0}}))
    monkeypatch.setattr(mini.Driver, "run_sft", lambda self: None)
    mini.main(["--out", str(out), "--from-stage", "sft", "--to-stage", "sft"])
    report = json.loads((out / "report.json").read_text())
    assert report["commands"] == cmds[:2]
    assert 300.0 <= report["total_wall_s"] < 310.0
    assert "grpo" not in report["stage_start_s"] and report["stage_start_s"]["sft"] == 300.0


def test_probes_measure_reading_from_a_runs_parts(tmp_path, capsys):
    """``training.mini.probe`` on a tiny run: the fresh head learns the photos it trains on (its loss
    falls), and the LM probe measures the same statements through an adapter, digits separately."""
    import torch
    from transformers import Qwen2ForCausalLM

    from training.mini import probe, stage0

    run = tmp_path / "run"
    tasks.write_split(run / "data", "train", 8)
    tasks.write_split(run / "data", "val", 4)
    stage0.pretrain_vision(run / "data", run / "vision", steps=1, batch=4, seed=0)
    tok = stage0.train_tokenizer(vocab_size=400)
    torch.manual_seed(0)
    Qwen2ForCausalLM(stage0.lm_config(tok, hidden=64, layers=1)).save_pretrained(run / "llm")
    tok.save_pretrained(run / "llm")

    rows = probe.probe_head(run, steps=40, train=8, every=20, log=lambda _: None)
    assert [r["step"] for r in rows] == [20, 40] and rows[-1]["loss"] < rows[0]["loss"]
    for r in rows:
        assert all(0.0 <= r[k] <= 1.0 for k in ("accuracy", "digit_accuracy", "exact", "greedy_accuracy"))
    for lm in ("pretrained", "frozen"):
        (row,) = probe.probe_lm(run, lm=lm, steps=2, train=8, every=2, log=lambda _: None)
        assert row["probe"] == f"lm ({lm})" and 0.0 <= row["digit_accuracy"] <= 1.0
    # the patch probe: a linear layer learns at least the paper (most patches) from the layouts
    patch = probe.probe_patches(run, train=8, steps=60)
    assert patch["val_patches_with_text"] > 0 and patch["paper_patches"] >= 0.8
    assert 0.0 <= patch["digit_patches"] <= 1.0 and 0.0 <= patch["other_text_patches"] <= 1.0
    # the text probe: a random LM restates nothing exactly; kinds are named as the problems are drawn
    probe.main(["text", str(run), "--problems", "6"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["probe"] == "text" and row["problems"] == 6 and row["copied"] == 0.0
    assert 0.0 <= row["accuracy"] <= 1.0 and row["by_kind"]
    assert set(row["by_kind"]) <= {k + mc for k in tasks.KINDS for mc in ("", "-mc")}
    shutil.rmtree(run / "llm")
    with pytest.raises(SystemExit, match="no llm"):
        probe.main(["lm", str(run)])
    with pytest.raises(SystemExit, match="no stage-0 LM"):
        probe.main(["text", str(run)])


def test_report_card_computes_the_targets_and_keeps_hand_notes(tmp_path):
    """The report card from a real run's report.json: targets are judged from the numbers (never typed
    in), the stage-0 LM's copying is stated when measured, and notes written by hand survive a rewrite."""
    from training.mini import report

    run = json.loads((Path(__file__).resolve().parents[2] / "assets/mini/runs/v4/report.json").read_text())
    rows = {r.split(" | ")[0].lstrip("| "): r for r in report.targets(run) if r.startswith("| ") and "wanted" not in r}
    assert rows["held-out accuracy, single sample (mean over the 8 samples)"].endswith("| 12.6% | **no** |")
    assert rows["GRPO+SSB minus MPO (held-out test, one sample)"].endswith("| +0.7 pts | **no** |")
    assert rows["whole recipe on this 2-core CPU"].endswith("| 47.1 min | yes |")
    assert "restates" not in report.markdown(run)  # an older run: no copying measured
    run["stages"]["stage0"]["lm"]["restatement_copied"] = 0.35
    assert "it restates 35% of them exactly" in report.markdown(run)
    report.write(run, tmp_path)
    card = tmp_path / "REPORT.md"
    card.write_text(card.read_text() + report.NOTES_MARK + "\nwritten by hand\n")
    report.write(run, tmp_path)
    assert card.read_text().endswith(report.NOTES_MARK + "\nwritten by hand\n")
    assert json.loads((tmp_path / "report.json").read_text())["stages"]["stage0"]["lm"]["restatement_copied"] == 0.35
