"""Model presets: a plain dict from a short name to where the weights come from and how to load them.

    from engine.presets import PRESETS, get_preset
    get_preset("r1v2-38b-nf4").quantization   # "nf4"

``source`` says where the checkpoint comes from:
- ``"tiny"``: built locally by ``engine.tiny`` (no download), cached in the data directory;
- ``"hub"``: a Hugging Face repository; ``layout="internvl_chat"`` means the original remote-code
  layout, converted once to a native transformers checkpoint by ``engine.convert`` (cached in the
  data directory), so no remote code ever runs.
- ``"local"``: a directory in the repository (the shipped ``mini`` model, added by its issue).

Sizes and memory are from FACTS.md (the R1V2 report and arithmetic, not measured here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tutor.errors import InputError
from tutor.limits import MAX_NEW_TOKENS

# The thinking budget of the R1V2 presets: Skywork's transformers script generates up to 64,000 new
# tokens and the R1V2 report evaluates at 64K (FACTS.md). It is also the most a request may ask for
# (tutor.limits.MAX_NEW_TOKENS). Past the LLM's max_position_embeddings, loading adds YaRN (engine.context).
R1V2_BUDGET = MAX_NEW_TOKENS  # 64,000: tutor.limits, the cap every path applies


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # "tiny" | "hub" | "local"
    description: str
    repo_id: str = ""  # hub repository, for source="hub"
    layout: str = "native"  # "native" | "internvl_chat" (original remote-code layout)
    quantization: str | None = None  # None | "nf4" | "int8" (bitsandbytes, in process)
    dtype: str = "auto"  # torch dtype for the unquantized parts: "auto" = bf16 on GPU, fp32 on CPU
    max_tiles: int = 12  # InternVL tiling: at most this many 448 px tiles (+ a thumbnail)
    # The thinking budget: new tokens per candidate when a request names none (the page's and the CLI's
    # default; engine.doctor reads it against rope_scaling / max_position_embeddings).
    max_new_tokens: int = R1V2_BUDGET
    seed: int = 0  # for source="tiny"
    served_only: bool = False  # only a serving engine (SGLang / vLLM) loads it, never the in-process Engine
    tp_size: int = 1  # GPUs per server replica (tensor parallelism) for `python -m engine serve`
    # The serving engine `python app.py --model NAME` starts as its child when it is installed
    # (engine.local; `--local-engine` chooses another or none); None: in process unless asked.
    engine: str | None = None
    # Whether the model can write new problems, hints and explanations of its own. False for the small
    # models (tiny-random, mini): the tutor then makes practice problems, hints and the page's examples
    # from its drill family (tutor.drills) and says honestly what the model cannot do.
    writes_problems: bool = True
    notes: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "tiny-random": Preset(
        name="tiny-random",
        source="tiny",
        description="Miniature random-weight R1V2 (native InternVL + Qwen2), built locally; for tests and UI work",
        max_tiles=6,
        max_new_tokens=64,
        writes_problems=False,
    ),
    "mini": Preset(
        name="mini",
        source="local",
        repo_id="assets/mini",
        description=(
            "Mini-R1V: the R1V2 recipe in miniature, trained on a CPU (training/mini). Solves only its own "
            "task family: addition with carries, ax+b=c, same-denominator fractions, f(x)=ax+b, and their "
            "multiple-choice forms, from a clean photo of one or two lines (zh/en)"
        ),
        max_tiles=1,
        max_new_tokens=128,
        writes_problems=False,
        notes={"report": "assets/mini/REPORT.md", "reward": "assets/mini/reward"},
    ),
    "r1v2-38b": Preset(
        name="r1v2-38b",
        source="hub",
        repo_id="Skywork/Skywork-R1V2-38B",
        layout="internvl_chat",
        description="Skywork-R1V2-38B in bf16 (about 72 GB of weights: 2 x 80 GB GPUs)",
        tp_size=2,
        notes={"weights_gb": 72},
    ),
    "r1v2-38b-nf4": Preset(
        name="r1v2-38b-nf4",
        source="hub",
        repo_id="Skywork/Skywork-R1V2-38B",
        layout="internvl_chat",
        quantization="nf4",
        description=(
            "Skywork-R1V2-38B, LLM in bitsandbytes NF4 (double quant, bf16 compute); vision tower, "
            "adapter and lm_head in bf16 (about 32 GB of weights: one 40-48 GB GPU)"
        ),
        notes={"weights_gb": 32},
    ),
    "r1v2-38b-awq": Preset(
        name="r1v2-38b-awq",
        source="hub",
        repo_id="Skywork/Skywork-R1V2-38B-AWQ",
        layout="internvl_chat",
        served_only=True,
        engine="sglang",
        description=(
            "Skywork-R1V2-38B-AWQ (4-bit AWQ), served by SGLang or vLLM: `python -m engine serve` "
            "(one GPU with more than 30 GB)"
        ),
        notes={"weights_gb": 30},
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is an InputError that lists the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        valid = ", ".join(sorted(PRESETS))
        raise InputError(
            "unknown_preset",
            f"Unknown model preset '{name}'. Valid presets: {valid}.",
            f"未知的模型预设“{name}”。可用的预设：{valid}。",
        ) from None
