"""The engine: from checked images and a question to n candidate solutions, in process.

    from engine.core import Engine, Sampling
    eng = Engine("tiny-random")
    sol = eng.solve([image], "Find x.", n=4, sampling=Sampling(max_new_tokens=64, seed=0))
    sol.answer, sol.chosen, sol.candidates[0].thinking

    for event in eng.stream([image], "Find x.", n=4):     # token deltas, then the finished solution
        if isinstance(event, Delta): print(event.index, event.text, end="")
        else: solution = event.solution

One batched generation per question: the prompt (image tiles included) is encoded by a single
forward pass, its KV cache is repeated n times, and the n candidates are decoded together as one
batch (``generate`` with the expanded cache), so the vision tower and the prefill run once, not n
times. ``Engine.stop()`` (or the ``stop`` event passed to ``stream``) ends a running generation at
the next token. Sampling defaults are R1V2's model-card values (temperature 0.6, top_p 0.95,
repetition penalty 1.05).

Prompts come from ``tutor.prompts``; thinking/answer splitting from ``tutor.reasoning``; final
answers from ``tutor.answers``. The chosen candidate comes from ``engine.rerank`` (``rerank=``,
default ``reward+vote``), scored by the reward model given as ``reward=`` (a preset name such as
``tiny-reward``, a checkpoint directory, a reward server's ``http://HOST:PORT``
(``engine.reward_client``), or a loaded ``engine.reward.RewardScorer``; None: no scores, so
``reward+vote`` falls back to answer agreement). A reward server that fails does not fail the solve:
the choice falls back to agreement and ``Solution.notes`` says so.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tutor.errors import EngineError, InputError
from tutor.intake import as_pil
from tutor.limits import MAX_N  # the limit lives in tutor/, the lowest layer; engine re-exports it
from tutor.reasoning import split_reasoning

log = logging.getLogger(__name__)


@dataclass
class Sampling:
    """How candidates are sampled. Defaults: R1V2's model card."""

    temperature: float = 0.6
    top_p: float = 0.95
    repetition_penalty: float = 1.05
    max_new_tokens: int | None = None  # None: the preset's default
    min_new_tokens: int = 0  # benchmarks set it to max_new_tokens so every run decodes the same length
    seed: int | None = None


@dataclass
class Candidate:
    index: int
    thinking: str
    text: str  # the answer part, after </think>
    answer: str  # the extracted final answer ("" when none was found)
    tokens: int  # generated tokens, EOS included
    finish_reason: str  # "stop" (EOS), "length" (max_new_tokens) or "stopped" (Engine.stop)
    truncated: bool  # never closed its thinking: no answer part
    reward: float | None = None
    group: int | None = None  # answer-agreement group (0 = the largest)


@dataclass
class Solution:
    candidates: list[Candidate]
    chosen: int
    model: str
    prompt_tokens: int
    timings: dict = field(default_factory=dict)
    stopped: bool = False
    strategy: str = ""  # the rerank strategy applied
    reason: str = ""  # why ``chosen`` won (engine.rerank)
    notes: list[dict] = field(default_factory=list)  # {"code", "en", "zh"}: what the reader should know

    @property
    def answer(self) -> str:
        return self.candidates[self.chosen].answer if self.candidates else ""

    def to_json(self) -> dict:
        """The ``python -m engine solve --json`` shape (DESIGN.md)."""
        return {
            "answer": self.answer,
            "chosen": self.chosen,
            "candidates": [
                {k: asdict(c)[k] for k in ("thinking", "text", "answer", "reward", "tokens", "group")}
                for c in self.candidates
            ],
            "strategy": self.strategy,
            "reason": self.reason,
            "notes": self.notes,
            "model": self.model,
            "timings": self.timings,
        }


@dataclass
class Delta:
    """New text of candidate ``index`` (raw model text: thinking, then ``</think>``, then the answer)."""

    index: int
    text: str


@dataclass
class Finished:
    solution: Solution


def make_candidate(index: int, raw_text: str, tokens: int, finish_reason: str) -> Candidate:
    """A candidate from raw model text (thinking, ``</think>``, answer): split, final answer extracted.

    Shared by every backend (in process and HTTP), so all build candidates the same way.
    """
    from tutor.answers import extract_final

    r = split_reasoning(raw_text)
    return Candidate(
        index=index, thinking=r.thinking, text=r.answer,
        answer=(extract_final(r.answer) or "") if not r.truncated else "",
        tokens=tokens, finish_reason=finish_reason, truncated=r.truncated,
    )


def choose_by_agreement(candidates: list[Candidate]) -> int:
    """The ``vote`` strategy of ``engine.rerank``: the first member of the largest group of equivalent
    final answers. Sets ``group`` on each candidate (0 = largest)."""
    from engine.rerank import rerank

    result = rerank(candidates, "vote", scores=None)
    result.apply(candidates)
    return candidates[result.chosen].index


def _user_text(messages: list[dict]) -> str:
    """The text of the last user turn: the prompt the reward model judges the responses against."""
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg["content"]
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


class _BatchStreamer:
    """Receives each decoding step's n new tokens from ``generate``; queues text deltas per candidate."""

    def __init__(self, tokenizer, n: int, eos_ids: set[int], out: queue.Queue):
        self.tok, self.eos, self.out = tokenizer, eos_ids, out
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.start = [0] * n  # first token not yet emitted as complete text
        self.done = [False] * n
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        for i, t in enumerate(value.reshape(len(self.tokens), -1)[:, -1].tolist()):
            if self.done[i]:
                continue
            self.tokens[i].append(t)
            if t in self.eos:
                self.done[i] = True
                self._flush(i, final=True)
            else:
                self._flush(i, final=False)

    def _flush(self, i: int, final: bool) -> None:
        text = self.tok.decode(self.tokens[i][self.start[i]:], skip_special_tokens=True)
        # Hold back a trailing partial multi-byte character until its other bytes arrive.
        if text and (final or not text.endswith("\ufffd")):
            self.start[i] = len(self.tokens[i])
            self.out.put(Delta(i, text))

    def end(self) -> None:
        for i in range(len(self.tokens)):
            if not self.done[i]:
                self._flush(i, final=True)


class _StopOnEvent:
    """A stopping criterion: every sequence stops once the event is set."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kw):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class BaseEngine:
    """What every backend shares: the blocking ``solve``, ``stop``, and reward scorers loaded once.

    A backend sets ``name`` and implements ``stream``; generations register their stop event in
    ``_running`` while they run.
    """

    reward_device = "cpu"  # where named reward models are loaded

    def __init__(self):
        self._running: set[threading.Event] = set()
        self._rewards: dict[str, object] = {}  # loaded reward scorers by preset name or path

    def reward_scorer(self, reward):
        """None for no reward model; a preset name or directory is loaded once and kept; anything else
        is taken as a loaded scorer (with ``.score``)."""
        if reward is None or (isinstance(reward, str) and reward.lower() == "none"):
            return None
        if isinstance(reward, (str, Path)):
            key = str(reward)
            if key not in self._rewards:
                from engine.reward_client import HttpRewardScorer, is_reward_url

                if is_reward_url(key):  # a reward server (engine.reward_server): scored there
                    self._rewards[key] = HttpRewardScorer(key)
                else:
                    from engine.reward import load_reward

                    self._rewards[key] = load_reward(reward, device=self.reward_device)
            return self._rewards[key]
        return reward

    def solve(self, images: Sequence, question: str = "", *, n: int = 1, sampling: Sampling | None = None,
              **kw) -> Solution:
        """All n candidates and the chosen one (blocking). Keyword arguments as for ``stream``."""
        for event in self.stream(images, question, n=n, sampling=sampling, **kw):
            if isinstance(event, Finished):
                return event.solution
        raise EngineError("no_result", "The model returned nothing.", "模型没有返回结果。")  # pragma: no cover

    def stream(self, images: Sequence, question: str = "", **kw) -> Iterator[Delta | Finished]:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every running generation at its next token."""
        for ev in list(self._running):
            ev.set()


class Engine(BaseEngine):
    """Candidate solutions from an in-process transformers model (see module docstring)."""

    def __init__(self, model: str | Path = "tiny-random", *, quantization: str | None = "preset",
                 device: str = "auto", loaded=None, max_new_tokens: int | None = None):
        from engine.loading import load_model

        super().__init__()
        self.lm = loaded or load_model(model, quantization=quantization, device=device, max_new_tokens=max_new_tokens)
        self.name = self.lm.name
        self.writes_problems = writes_problems(self.name)
        self._lock = threading.Lock()  # one generation at a time: the model and the torch RNG are shared

    @property
    def reward_device(self) -> str:
        """Reward models go on the same device type as the policy."""
        return "cuda" if getattr(self.lm.device, "type", "cpu") == "cuda" else "cpu"

    # -- public API -------------------------------------------------------------------------------

    def stream(self, images: Sequence, question: str = "", *, n: int = 1, sampling: Sampling | None = None,
               messages: list[dict] | None = None, subject: str = "math", problem_type: str = "auto",
               lang: str = "en", max_tiles: int | None = None, stop: threading.Event | None = None,
               rerank: str = "reward+vote", reward=None) -> Iterator[Delta | Finished]:
        """Yield ``Delta`` events as tokens arrive, then one ``Finished`` with the solution.

        ``messages`` (from ``tutor.prompts.build_messages``) overrides the default solve prompt built
        from ``question``, ``subject``, ``problem_type`` and ``lang``; its image parts are filled with
        ``images`` in order. ``rerank`` and ``reward`` choose the shown candidate (module docstring).
        """
        from engine.rerank import check_strategy
        from tutor.prompts import build_messages

        scorer = self.reward_scorer(reward)
        check_strategy(rerank, has_reward=scorer is not None)

        sampling = sampling or Sampling()
        self._check_n(n)
        pil = [as_pil(im) for im in images]
        if messages is None:
            messages = build_messages("solve", question=question, subject=subject, problem_type=problem_type,
                                      lang=lang, n_images=len(pil))
        stop = stop or threading.Event()
        out: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=self._run,
            args=(pil, messages, n, sampling, max_tiles or self.lm.max_tiles, stop, out, rerank, scorer),
            daemon=True,
        )
        worker.start()
        try:
            while True:
                item = out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            stop.set()  # the consumer went away (or finished): end the generation
            worker.join(timeout=60)

    # -- internals ----------------------------------------------------------------------------------

    @staticmethod
    def _check_n(n: int) -> None:
        if not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise InputError(
                "bad_n",
                f"The number of candidates must be between 1 and {MAX_N} (got {n}).",
                f"候选解答的数量必须在 1 到 {MAX_N} 之间（收到 {n}）。",
            )

    def prompt_text(self, messages: list[dict]) -> str:
        """ChatML prompt for this model: tutor's rendering with the processor's image placeholder."""
        from tutor.prompts import render_text_prompt

        return render_text_prompt(messages).replace("<image>", self.lm.processor.image_token)

    def _run(self, images, messages, n, sampling, max_tiles, stop, out, strategy="vote", scorer=None) -> None:
        try:
            with self._lock:
                self._running.add(stop)
                try:
                    sol = self._generate(images, messages, n, sampling, max_tiles, stop, out)
                    self._rerank(sol, images, messages, strategy, scorer)
                    out.put(Finished(sol))
                finally:
                    self._running.discard(stop)
        except BaseException as e:  # handed to the consumer's thread, never lost
            out.put(e if isinstance(e, (EngineError, InputError)) else _engine_error(e))

    @staticmethod
    def _rerank(sol: Solution, images, messages, strategy: str, scorer) -> None:
        """Score the candidates (when there is a reward model) and choose one with ``engine.rerank``."""
        from engine.rerank import rerank

        scores = None
        if scorer is not None and sol.candidates and not sol.stopped:  # a stopped run is not scored
            t = time.perf_counter()
            try:
                scores = scorer.score(images, _user_text(messages), sol.candidates)
            except EngineError as e:
                if not getattr(scorer, "fallback", False):  # an in-process model failing is the solve failing
                    raise
                # a reward server that fails costs the reranking, not the answer: choose by agreement, say so
                log.warning("reward scoring by %s failed (%s: %s); choosing by answer agreement", scorer.name,
                            e.code, e.detail)
                sol.notes.append({"code": "reward_unavailable",
                                  "en": "The reward model could not score the solutions, so the answer was chosen "
                                        f"by agreement between the candidates ({e.code}).",
                                  "zh": f"奖励模型未能为解答评分，因此按候选答案的一致性选择了答案（{e.code}）。",
                                  "detail": f"{e.en} {e.detail}"})  # may name the server: not for the page
                sol.timings["reward_error"] = e.code
                if strategy == "reward":  # nothing to rank by: agreement instead
                    strategy = "vote"
            sol.timings["reward_s"] = round(time.perf_counter() - t, 4)
            sol.timings["total_s"] = round(sol.timings.get("total_s", 0) + sol.timings["reward_s"], 4)
        result = rerank(sol.candidates, strategy, scores)
        result.apply(sol.candidates)
        sol.chosen, sol.strategy, sol.reason = sol.candidates[result.chosen].index, result.strategy, result.reason
        if sol.timings.get("reward_error"):
            sol.reason += f" [reward model unavailable: {sol.timings['reward_error']}]"

    def _generate(self, images, messages, n, sampling, max_tiles, stop, out) -> Solution:
        import torch
        from transformers import StoppingCriteriaList

        lm, t0 = self.lm, time.perf_counter()
        tok = lm.tokenizer
        inputs = lm.processor(text=self.prompt_text(messages), images=images or None, return_tensors="pt",
                              max_patches=max_tiles)
        inputs = inputs.to(lm.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(lm.model.dtype)
        ids = inputs["input_ids"]
        prompt_len = ids.shape[1]
        t1 = time.perf_counter()

        # Prefill once (vision tower + prompt), then repeat the cache for the n candidates.
        with torch.inference_mode():
            pre = lm.model(input_ids=ids[:, :-1], attention_mask=inputs["attention_mask"][:, :-1],
                           pixel_values=inputs.get("pixel_values"), use_cache=True, logits_to_keep=1)
        cache = pre.cache
        if n > 1:
            cache.batch_repeat_interleave(n)
        t2 = time.perf_counter()

        gen_cfg = lm.model.generation_config
        eos = gen_cfg.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        max_new = sampling.max_new_tokens or _preset_max_new(lm)
        budget = max_new
        context = int(getattr(lm, "context", 0) or 0)
        if context and prompt_len + max_new > context:  # never decode past the positions the model has
            max_new = max(1, context - prompt_len)
            log.warning("budget %d + prompt %d > the model's %d positions: %d new tokens at most", budget,
                        prompt_len, context, max_new)
        streamer = _BatchStreamer(tok, n, eos_ids, out)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            seqs = lm.model.generate(
                input_ids=ids.repeat(n, 1),
                attention_mask=inputs["attention_mask"].repeat(n, 1),
                cache=cache,
                do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None,
                top_p=sampling.top_p if sampling.temperature > 0 else None,
                repetition_penalty=sampling.repetition_penalty,
                max_new_tokens=max_new,
                min_new_tokens=min(sampling.min_new_tokens, max_new),
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                pad_token_id=tok.pad_token_id,
            )
        t3 = time.perf_counter()

        candidates = []
        for i, row in enumerate(seqs[:, prompt_len:].tolist()):
            end = next((j for j, t in enumerate(row) if t in eos_ids), None)
            gen = row if end is None else row[: end + 1]
            reason = "stop" if end is not None else ("stopped" if stop.is_set() else "length")
            candidates.append(make_candidate(i, tok.decode(gen, skip_special_tokens=True), len(gen), reason))
        chosen = 0  # set by _rerank
        generated = sum(c.tokens for c in candidates)
        timings = {
            "preprocess_s": round(t1 - t0, 4),
            "prefill_s": round(t2 - t1, 4),
            "decode_s": round(t3 - t2, 4),
            "total_s": round(time.perf_counter() - t0, 4),
            "generated_tokens": generated,
            "tokens_per_s": round(generated / max(t3 - t2, 1e-9), 1),
            "max_new_tokens": max_new,  # the thinking budget this run had (webui.view.budget_note)
        }
        if max_new < budget:
            timings["context_limit"] = context
        return Solution(candidates, chosen, self.name, prompt_len, timings,
                        stopped=stop.is_set() and any(c.finish_reason == "stopped" for c in candidates))


def writes_problems(name: str) -> bool:
    """The preset's ``writes_problems`` capability (True for a model that is not a preset)."""
    from engine.presets import PRESETS

    preset = PRESETS.get(name)
    return preset.writes_problems if preset else True


def _preset_max_new(lm) -> int:
    from engine.presets import PRESETS

    budget = getattr(lm, "budget", None)
    if budget:
        return int(budget)
    preset = PRESETS.get(lm.name)
    return preset.max_new_tokens if preset else 4096


def _engine_error(e: BaseException) -> EngineError:
    import torch

    log.exception("generation failed", exc_info=e)
    if isinstance(e, torch.OutOfMemoryError):
        return EngineError("out_of_memory", "The model ran out of memory. Try fewer candidates or a smaller image.",
                           "模型内存不足。请减少候选数量或使用更小的图片。", detail=repr(e))
    return EngineError("generation_failed", "The model failed while answering. Please try again.",
                       "模型在作答时出错，请重试。", detail=repr(e))
