"""The thinking budget against the model's positions: YaRN RoPE scaling when budget + prompt needs it.

    from engine.context import plan_context
    plan = plan_context({"max_position_embeddings": 40960, "rope_theta": 1e6}, budget=64_000, prompt=3840)
    plan.rope_scaling   # {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    plan.context        # 131072 positions after scaling
    plan.vllm_overrides("llm_config")   # for `vllm serve --hf-overrides`

R1V2's reasoning runs long: Skywork's transformers script generates up to 64,000 new tokens and the
report evaluates at 64K (FACTS.md). Its LLM is QwQ-32B, whose model card says to enable YaRN
(``factor`` 4, ``original_max_position_embeddings`` 32768, its pre-training context) for inputs longer
than 32,768 tokens; transformers applies YaRN statically (the same scaling for short texts), so the
Qwen docs advise adding it only when long contexts are needed and picking the factor to fit. R1V2's own
``llm_config`` values (``max_position_embeddings``, ``rope_scaling``) are not in FACTS.md (not
verified), so nothing here assumes them: :func:`plan_context` reads the checkpoint's text config and

- keeps it as it is when ``budget + prompt`` fits ``max_position_embeddings`` (the tiny and mini CPU
  presets, with budgets of 64 and 128 tokens), or when it already declares a RoPE scaling;
- otherwise adds YaRN with ``original_max_position_embeddings`` = the config's own value if it has one,
  else ``min(max_position_embeddings, 32768)`` (QwQ's pre-training context), and the smallest factor
  of 2, 4 that covers the need (QwQ's card: 4 gives 131,072 positions; it validated no more, so a need
  beyond 4x is refused with a clear error).

``prompt`` is what the prompt may take: :func:`prompt_reserve` (one image at the preset's tile limit
plus ``TEXT_RESERVE`` tokens of text) when loading in process, ``SERVE_PROMPT_RESERVE`` (four images
of 13 tiles) for a server. A request whose prompt is longer still gets its budget cut to the positions
left (``engine.core``), and the page says it ran out of budget. Tests: ``tests/engine/test_context.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tutor.errors import InputError

QWEN_PRETRAIN_CONTEXT = 32768  # QwQ-32B / Qwen2.5: YaRN's original_max_position_embeddings (model card)
MAX_YARN_FACTOR = 4  # what QwQ's card validated (131,072 positions)
TEXT_RESERVE = 512  # prompt tokens beside the image: template, question, instructions
SERVE_PROMPT_RESERVE = 4 * 13 * 256 + 1024  # a server's prompt: 4 images x 13 tiles x 256 tokens + text


@dataclass(frozen=True)
class ContextPlan:
    needed: int  # budget + prompt
    max_position_embeddings: int  # the checkpoint's
    context: int  # positions the model can use (after scaling)
    rope_scaling: dict | None  # the YaRN block this plan adds; None: the config stays as it is
    declared: dict | None = None  # a RoPE scaling the checkpoint already declares

    def vllm_overrides(self, key: str = "llm_config") -> dict:
        """``--hf-overrides`` for vLLM (which updates a nested sub-config key by key); {} when nothing to add."""
        return {key: {"rope_scaling": self.rope_scaling}} if self.rope_scaling else {}


def _declared(text_config: dict) -> dict | None:
    rope = text_config.get("rope_scaling") or text_config.get("rope_parameters") or None
    if isinstance(rope, dict) and (rope.get("rope_type") or rope.get("type") or "default") != "default":
        return rope
    return None


def plan_context(text_config: dict, budget: int, prompt: int = SERVE_PROMPT_RESERVE) -> ContextPlan:
    """Whether the LLM of ``text_config`` (its config dict) needs YaRN for ``budget`` new tokens after a
    prompt of ``prompt`` tokens, and which (module docstring). Refuses a need beyond 4x."""
    max_pos = int(text_config.get("max_position_embeddings") or QWEN_PRETRAIN_CONTEXT)
    needed = int(budget) + int(prompt)
    declared = _declared(text_config)
    if declared is not None:
        factor = float(declared.get("factor") or 1.0)
        original = int(declared.get("original_max_position_embeddings") or max_pos)
        return ContextPlan(needed, max_pos, max(max_pos, int(original * factor)), None, declared)
    if needed <= max_pos:
        return ContextPlan(needed, max_pos, max_pos, None)
    original = int(text_config.get("original_max_position_embeddings") or min(max_pos, QWEN_PRETRAIN_CONTEXT))
    factor = next((f for f in (2, 4) if original * f >= needed), None)
    if factor is None:
        most = original * MAX_YARN_FACTOR - int(prompt)
        raise InputError(
            "budget_too_long",
            f"A thinking budget of {budget} tokens does not fit this model: with YaRN x{MAX_YARN_FACTOR} it has "
            f"{original * MAX_YARN_FACTOR} positions, so at most {most} new tokens after a {prompt}-token prompt.",
            f"思考预算 {budget} 个词元超出了该模型的范围：即使使用 YaRN x{MAX_YARN_FACTOR} 也只有 "
            f"{original * MAX_YARN_FACTOR} 个位置，{prompt} 个词元的提示之后最多生成 {most} 个新词元。",
        )
    rope = {"rope_type": "yarn", "factor": float(factor), "original_max_position_embeddings": original}
    return ContextPlan(needed, max_pos, original * factor, rope)


def prompt_reserve(image_seq_length: int, max_tiles: int) -> int:
    """The prompt a loaded model plans for: one image at ``max_tiles`` tiles (plus the thumbnail when
    there is more than one tile) and ``TEXT_RESERVE`` tokens of text."""
    tiles = max_tiles + (1 if max_tiles > 1 else 0)
    return int(image_seq_length) * tiles + TEXT_RESERVE


def apply_to_config(config, plan: ContextPlan) -> None:
    """Set ``plan``'s YaRN on a transformers config (its ``text_config`` when it has one), in place.
    transformers 5 keeps RoPE in ``rope_parameters`` (with ``rope_theta``)."""
    if not plan.rope_scaling:
        return
    text = getattr(config, "text_config", None) or config
    base = dict(getattr(text, "rope_parameters", None) or {})
    theta = base.get("rope_theta") or getattr(text, "rope_theta", None)
    text.rope_parameters = {**base, **plan.rope_scaling, **({"rope_theta": theta} if theta else {})}
    text.max_position_embeddings = plan.context
