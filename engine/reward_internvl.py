"""Reward scores from a native InternVL reward checkpoint, as ``training.reward`` trains and saves them.

    from engine.reward import load_reward
    scorer = load_reward("mini-reward")                  # or any directory RewardModel.save wrote
    scorer.score([image], question, ["...\\n</think>\\n\\nThe answer is \\boxed{85}."])  # -> [1.7]

``engine.reward.load_reward`` returns an ``InternVLRewardScorer`` when the checkpoint's
``config.json`` says ``model_type: internvl`` (``InternVLForConditionalGeneration`` backbone +
``value_head.safetensors``). The score is the one ``training.reward.RewardModel.forward`` gives on
the same input: the value head on the final (post-norm) hidden state of the last token.

The input is laid out exactly as in training (``training.data.Collator``): the prompt rendered by
``tutor.prompts.render_text_prompt`` -- the user turn with ``<image>\\n`` per image before the
question, then the assistant turn pre-filled with ``<think>\\n`` -- with each ``<image>`` expanded
by the checkpoint's processor into ``<img><IMG_CONTEXT>*N</img>``; then the response, which
continues after the pre-fill (reasoning, ``</think>``, answer), tokenized on its own with
``<|im_end|>`` appended. ``question`` is the user turn's text as the engine built it
(``engine.core._user_text``: the tutor prompt, not only the problem).

What is read of an engine ``Candidate`` (``ScoreSettings.reads``; the default for these checkpoints
is ``"thinking+answer"``, the whole completion, because that is what they were trained on):
``thinking + "\\n</think>\\n\\n" + answer`` (the last ``thinking_tokens`` tokens of the thinking),
or with ``"answer"`` an empty thinking before the answer; a candidate that never closed its thinking
is read as its thinking's tail. A string is read as is. Tiles per image: ``ScoreSettings.max_tiles``,
or the checkpoint processor's own ``max_patches`` (training's ``max_tiles`` is saved there by the
mini pipeline; pass it when the two differ).

Images are processed and encoded once per call: ``get_image_features`` runs the vision tower and
the projector once, and every batch builds its ``inputs_embeds`` from the token embeddings with
those features scattered into the ``<IMG_CONTEXT>`` positions (what ``InternVLModel.forward`` does
inside), then runs only the language model.
"""

from __future__ import annotations

import time

from engine.reward_scorer import RewardScorer
from tutor.errors import EngineError

RESPONSE_END = "<|im_end|>"  # training.data.RESPONSE_END: appended to every response and scored on
THINK_END = "</think>"


class InternVLRewardScorer(RewardScorer):
    """``RewardScorer`` for a native InternVL backbone in the training layout (module docstring)."""

    family = "internvl"

    def response_text(self, candidate) -> str:
        s = self.settings
        if isinstance(candidate, str):
            return self._tail(candidate, s.max_response_tokens)
        answer = (getattr(candidate, "text", "") or "").strip()
        thinking = (getattr(candidate, "thinking", "") or "").strip()
        if not answer and getattr(candidate, "truncated", False):
            text = self._tail(thinking, s.thinking_tokens)
        else:
            kept = self._tail(thinking, s.thinking_tokens) if s.reads == "thinking+answer" else ""
            text = f"{kept}\n{THINK_END}\n\n{answer}"  # the layout the mini solutions are written in
        return self._tail(text, s.max_response_tokens)

    def render_prompt(self, question: str, n_images: int) -> str:
        """The prompt as training renders it, each ``<image>`` as the processor's image token."""
        from tutor.prompts import render_text_prompt

        user = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": question}]
        text = render_text_prompt([{"role": "user", "content": user}])
        return text.replace("<image>", self.processor.image_token)

    def render(self, question: str, response: str, n_images: int) -> str:
        """The whole scored text (prompt + response + ``<|im_end|>``), images not yet expanded."""
        return self.render_prompt(question, n_images) + response + RESPONSE_END

    @property
    def max_tiles(self) -> int:
        return self.settings.max_tiles or int(self.processor.image_processor.max_patches)

    def _score(self, images, question, texts) -> list[float]:
        import torch

        from tutor.intake import as_pil

        t0 = time.perf_counter()
        pil = [as_pil(im) for im in images]
        tok, model = self.tokenizer, self.model
        enc = self.processor(text=self.render_prompt(question, len(pil)), images=pil or None, return_tensors="pt",
                             max_patches=self.max_tiles)
        prompt = enc["input_ids"][0].tolist()
        image_id = model.config.image_token_id
        features = None
        if pil:
            with torch.inference_mode():
                pixel_values = enc["pixel_values"].to(self.device, model.model.vision_tower.dtype)
                out = model.model.get_image_features(pixel_values=pixel_values, return_dict=True)
                features = out.pooler_output.reshape(-1, out.pooler_output.shape[-1])
            n_tokens = sum(1 for t in prompt if t == image_id)
            if n_tokens != features.shape[0]:
                raise EngineError("reward_template", "The reward model's prompt lost part of the image.",
                                  "奖励模型的提示丢失了部分图片。",
                                  detail=f"{n_tokens} image tokens for {features.shape[0]} image features")
        t1 = time.perf_counter()

        image_token = self.processor.image_token  # never in a response: it would take an image slot
        encoded = [prompt + tok(t.replace(image_token, "") + RESPONSE_END, add_special_tokens=False)["input_ids"]
                   for t in texts]
        embed = model.model.get_input_embeddings()

        def hidden_states(ids, mask):
            embeds = embed(ids)
            if features is not None:  # the same features in every row, at its image tokens
                slots = (ids == image_id).unsqueeze(-1)
                embeds = embeds.masked_scatter(slots, features.to(embeds.dtype).repeat(len(ids), 1))
            return model.model.language_model(inputs_embeds=embeds, attention_mask=mask,
                                              use_cache=False).last_hidden_state

        return self._score_rows(encoded, hidden_states, t0, t1)
