"""Run by the pinned SGLang's own Python (engine/envs.py ENVS["sglang"]): how SGLang itself turns a
chat request into the model's input on a checkpoint, with a chat template. Prints one JSON object.

    <sglang env>/bin/python tests/sglang_probe.py SPEC.json
    # SPEC.json: {"model": DIR, "templates": {"ours": FILE, ...}, "cases": [OPENAI_MESSAGES, ...]}

Every step is SGLang's code, as ``launch_server`` runs it (0.5.23): the server args published for the
tokenizer process, ``TokenizerManager.init_model_config`` and ``init_tokenizer_and_processor`` (the
config with ``--json-model-override-args``, ``get_processor`` -> AutoProcessor, the InternVL
multimodal processor), ``TemplateManager.initialize_templates`` (our Jinja file as ``--chat-template``),
``OpenAIServingChat._process_messages`` (the rendered prompt and the image list), then the InternVL
processor's ``process_mm_data_async``, whose ``load_mm_data`` (the matching of placeholders to
images) is recorded as it runs. Only the reading of the results is ours. It never imports the project
(another interpreter, with SGLang's pinned transformers): tests/test_sglang_template.py asserts.

On a CPU: ``sgl_kernel`` needs the GPU driver and SGLang loads it when ``SGLANG_USE_CPU_ENGINE=1`` is
set before its imports, so it is set after them, and the caches of ``is_cpu`` and ``get_device`` are
cleared so that the processor's tensors go to the CPU (FACTS.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

ARCH_OVERRIDE = json.dumps({"architectures": ["InternVLChatModel"]}, separators=(",", ":"))  # engine.serve's


def _to_cpu() -> None:
    os.environ["SGLANG_USE_CPU_ENGINE"] = "1"
    from sglang.srt.utils import common

    for name in ("is_cpu", "get_device", "is_cuda", "is_cuda_alike"):
        fn = getattr(common, name, None)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()


def setup(model: str):
    """A tokenizer manager holding SGLang's model config, tokenizer and multimodal processor."""
    from sglang.srt.managers.multimodal_processor import import_processors
    from sglang.srt.managers.tokenizer_manager import TokenizerManager
    from sglang.srt.models.registry import ModelRegistry
    from sglang.srt.runtime_context import publish
    from sglang.srt.server_args import ServerArgs

    # the processors and the model classes are imported before SGLANG_USE_CPU_ENGINE is set (docstring)
    import_processors("sglang.srt.multimodal.processors")
    assert ModelRegistry.is_arch_supported("InternVLChatModel"), "SGLang's InternVLChatModel did not import"
    _to_cpu()
    args = ServerArgs(model_path=model, trust_remote_code=True, json_model_override_args=ARCH_OVERRIDE,
                      reasoning_parser="deepseek-r1", device="cpu")
    args.resolve_once()
    publish(args, role="tokenizer")
    tm = TokenizerManager.__new__(TokenizerManager)  # its set-up steps, without the sockets and workers
    tm.server_args = args
    tm.init_model_config()
    tm.init_tokenizer_and_processor()
    return tm


def chat_for(tm, template: str):
    """OpenAIServingChat with ``template`` loaded by SGLang's TemplateManager (as --chat-template)."""
    from sglang.srt.entrypoints.openai.serving_chat import OpenAIServingChat
    from sglang.srt.parser.template_manager import TemplateManager
    from sglang.srt.runtime_context import get_model

    templates = TemplateManager()
    templates.initialize_templates(tokenizer_manager=tm, model_path=get_model().model_path, chat_template=template)
    return OpenAIServingChat(tm, templates)


def run_case(tm, chat, messages: list[dict]) -> dict:
    from sglang.srt.entrypoints.openai.protocol import ChatCompletionRequest

    request = ChatCompletionRequest(model="r1v2", messages=messages)
    rendered = chat._process_messages(request, True)
    adapted, _ = chat._convert_to_internal_request(ChatCompletionRequest(model="r1v2", messages=messages), None)
    proc = tm.mm_processor
    loads = []
    real_load = proc.load_mm_data

    async def recording_load(*a, **kw):
        out = await real_load(*a, **kw)
        loads.append({"prompt": kw.get("prompt", a[0] if a else None), "images": len(out.images)})
        return out

    proc.load_mm_data = recording_load
    try:
        out = asyncio.run(proc.process_mm_data_async(image_data=adapted.image_data, input_text=adapted.text,
                                                     request_obj=adapted, max_req_input_len=1 << 20))
    finally:
        proc.load_mm_data = real_load
    ids = list(out.input_ids)
    start, end, ctx = proc.img_start_token_id, proc.img_end_token_id, proc.img_context_token_id
    blocks, inside, run, stray_ctx = [], False, 0, 0
    for i in ids:
        if i == start:
            inside, run = True, 0
        elif i == end and inside:
            blocks.append(run)
            inside = False
        elif i == ctx:
            if inside:
                run += 1
            else:
                stray_ctx += 1
    text = tm.tokenizer.decode([i for i in ids if i != ctx], skip_special_tokens=False)
    return {
        "rendered_prompt": rendered.prompt,
        "image_data": len(rendered.image_data or []),
        "max_dynamic_patch": getattr(adapted, "image_max_dynamic_patch", None),
        "loads": [{"images": x["images"], "placeholders": {p: (x["prompt"] or "").count(p)
                                                           for p in ("<image>", "<IMG_CONTEXT>")}} for x in loads],
        "img_blocks": blocks,
        "stray_context_tokens": stray_ctx,
        "num_image_token": proc.num_image_token,
        "mm_items": len(getattr(out, "mm_items", None) or []),
        "tiles": [int(item.feature.shape[0]) for item in (getattr(out, "mm_items", None) or [])
                  if getattr(item, "feature", None) is not None],  # SGLang's own tiling, per image
        "text": text,
        "leftover": {p: text.count(p) for p in ("<image>", "<IMG_CONTEXT>")} | {
            "<<<...>>>": len(re.findall(r"<<<__\w+__>>>", text))},
        "ends_with_think": text.endswith("<|im_start|>assistant\n<think>\n"),
    }


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:  # a file: data URLs outgrow one argv string
        spec = json.load(f)
    import sglang

    tm = setup(spec["model"])
    result = {"sglang": sglang.__version__, "processor": type(tm.mm_processor).__name__,
              "hf_processor": type(tm.processor).__name__, "llm_arch": getattr(tm.mm_processor, "llm_arch", None),
              "templates": {}}
    for name, template in spec["templates"].items():
        chat = chat_for(tm, template)
        result["templates"][name] = [run_case(tm, chat, c) for c in spec["cases"]]
    print("R1V-PROBE " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
