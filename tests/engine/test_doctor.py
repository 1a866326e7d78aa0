"""`python -m engine doctor`: the project's own tiny checkpoints pass (from their small files only), and
checkpoints broken one way each fail on the row that names the break."""

import json
import shutil
from dataclasses import replace

import pytest


@pytest.fixture(scope="module")
def original_tiny():
    from engine.convert import tiny_original_path

    return tiny_original_path(0)


def _copy(src, dst, *, weights=True):
    shutil.copytree(src, dst, ignore=None if weights else shutil.ignore_patterns("*.safetensors"))
    return dst


def _unspecial_think(path):
    """Mark <think>/</think> non-special in a copy (engine/tiny.py's tokenizer marks them special: issue 19)."""
    tj = json.loads((path / "tokenizer.json").read_text())
    for t in tj["added_tokens"]:
        if t["content"] in ("<think>", "</think>"):
            t["special"] = False
    (path / "tokenizer.json").write_text(json.dumps(tj))


def _edit(path, name, edit):
    data = json.loads((path / name).read_text())
    edit(data)
    (path / name).write_text(json.dumps(data))


def _rows(path, **kw):
    from engine.doctor import diagnose

    return {r.check: r for r in diagnose(str(path), **kw)}


def _doctor(capsys, *argv):
    from engine.__main__ import main

    rc = main(["doctor", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_original_tiny_passes_from_its_json_files_only(original_tiny, tmp_path, capsys):
    """The done-when: the original-layout tiny checkpoint with its weights removed (only the index, the
    configs and the tokenizer files) passes every row but the </think> one (tiny.py marks it special)."""
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    assert not list(ckpt.glob("*.safetensors"))
    rows = _rows(ckpt)
    failed = [k for k, r in rows.items() if r.verdict == "FAIL"]
    assert failed == ["think tokens"], failed
    assert "'ab'" in rows["think tokens"].detail and "lost" in rows["think tokens"].detail
    assert "model.safetensors.index.json" in rows["weights mapped"].detail
    for check in ("architecture", "ps_version", "select_layer", "downsample_ratio", "image size",
                  "max_dynamic_patch", "context length", "native class", "vision flags", "image tokens",
                  "EOS ids", "chat template", "quantization config"):
        assert rows[check].verdict == "pass", (check, rows[check].detail)
    _unspecial_think(ckpt)
    rc, out, err = _doctor(capsys, ckpt)
    assert rc == 0, out + err
    assert "think tokens" in out and "FAIL" not in out and "all" in err


def test_original_tiny_with_weights_and_no_index_reads_the_headers(original_tiny, tmp_path):
    ckpt = _copy(original_tiny, tmp_path / "orig")
    (ckpt / "model.safetensors.index.json").unlink()
    rows = _rows(ckpt)
    assert "headers of model.safetensors" in rows["weights mapped"].detail
    assert rows["native class"].verdict == "pass" and "names and shapes" in rows["native class"].detail


def test_native_tiny_with_and_without_weights(tiny_dir, tmp_path, capsys):
    with_weights = _rows(tiny_dir)
    assert with_weights["architecture"].verdict == "pass" and with_weights["native class"].verdict == "pass"
    assert [k for k, r in with_weights.items() if r.verdict == "FAIL"] == ["think tokens"]
    bare = _copy(tiny_dir, tmp_path / "native", weights=False)
    rc, out, err = _doctor(capsys, bare)  # no weights and no index: nothing to check the names with
    assert rc == 1 and "weight names" in err and "no weight names found" in out


def test_an_unmapped_key_in_the_index_is_named(original_tiny, tmp_path, capsys):
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    _unspecial_think(ckpt)
    key = "vision_model.encoder.layers.1.attn.rotary.inv_freq"
    _edit(ckpt, "model.safetensors.index.json", lambda d: d["weight_map"].update({key: "model.safetensors"}))
    rc, out, err = _doctor(capsys, ckpt)
    assert rc == 1 and "weights mapped" in err
    assert f"the converter cannot map 1: {key}" in out


def test_a_key_the_native_class_would_miss_is_named(original_tiny, tmp_path):
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    gone = "vision_model.encoder.layers.0.attn.q_norm.weight"
    _edit(ckpt, "model.safetensors.index.json", lambda d: d["weight_map"].pop(gone))
    row = _rows(ckpt)["native class"]
    assert row.verdict == "FAIL" and "would miss 1" in row.detail
    assert "model.vision_tower.encoder.layer.0.attention.q_norm.weight" in row.detail


@pytest.mark.parametrize("vision", ["internvit-6b", "internvit-300m"])
def test_absent_vision_flags(tmp_path, vision):
    """Flags absent: the InternVL defaults (qkv_bias False, qk_normalization True) fit InternViT-6B's
    tensors, not 300M's; the row says which flag the servers would build wrong."""
    from engine.convert import convert_to_original
    from engine.tiny import build_tiny

    kw = {} if vision == "internvit-6b" else {"vision_norm": "layer_norm", "qk_norm": False, "qkv_bias": True}
    ckpt = convert_to_original(build_tiny(tmp_path / "native", seed=1, **kw), tmp_path / "orig")

    def drop(cfg):
        for k in ("qkv_bias", "qk_normalization", "norm_type"):
            cfg["vision_config"].pop(k)
    _edit(ckpt, "config.json", drop)
    rows = _rows(ckpt)
    assert rows["native class"].verdict == "pass"  # the converter follows the tensors either way
    flags = rows["vision flags"]
    if vision == "internvit-6b":
        assert flags.verdict == "pass" and "absent -> class default True" in flags.detail
    else:
        assert flags.verdict == "FAIL"
        assert "qkv_bias: tensors True but config absent -> class default False" in flags.detail
        assert "qk_normalization: tensors False but config absent -> class default True" in flags.detail


def test_ps_version(original_tiny, tmp_path):
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    _edit(ckpt, "config.json", lambda c: c.update(ps_version="v1"))
    row = _rows(ckpt)["ps_version"]
    assert row.verdict == "pass" and row.detail.startswith("v1") and "engine.loading" in row.detail
    _edit(ckpt, "config.json", lambda c: c.pop("ps_version"))
    assert _rows(ckpt)["ps_version"].detail.startswith("v1 (absent")
    _edit(ckpt, "config.json", lambda c: c.update(ps_version="v3"))
    row = _rows(ckpt)["ps_version"]
    assert row.verdict == "FAIL" and row.blocks_convert


SYSTEM_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n你是一个有用的助手。<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image>\n{% else %}{{ p['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_that_injects_a_system_prompt(original_tiny, tmp_path):
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    (ckpt / "chat_template.jinja").write_text(SYSTEM_TEMPLATE)
    row = _rows(ckpt)["chat template"]
    assert row.verdict == "FAIL"
    assert "injects a system prompt" in row.detail and "no <think> pre-fill" in row.detail


def test_a_string_content_template_is_rendered_as_vllm_flattens_it(original_tiny, tmp_path):
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    (ckpt / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    row = _rows(ckpt)["chat template"]
    assert row.verdict == "pass" and "string content" in row.detail


def test_context_length_against_the_budget():
    from engine.checkpoint_checks import context_rows
    from engine.presets import PRESETS

    long = replace(PRESETS["r1v2-38b"], max_new_tokens=64000)
    cfg = {"llm_config": {"max_position_embeddings": 40960}}
    row = context_rows(cfg, long)[0]  # engine.context adds YaRN x4 when loading and launching: that counts
    assert row.verdict == "pass" and "max_new_tokens=64000" in row.detail and "engine.context" in row.detail
    assert "'rope_type': 'yarn'" in row.detail and "131072 positions" in row.detail
    too_long = replace(PRESETS["r1v2-38b"], max_new_tokens=200_000)  # past what YaRN x4 gives
    row = context_rows(cfg, too_long)[0]
    assert row.verdict == "FAIL" and "does not fit this model" in row.detail
    cfg["llm_config"]["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    row = context_rows(cfg, long)[0]
    assert row.verdict == "pass" and "131072 positions" in row.detail


def test_where_an_awq_build_keeps_its_quantization_config(original_tiny, tmp_path):
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    _unspecial_think(ckpt)
    q = "language_model.model.layers.0.mlp.down_proj"

    def awq(index):
        wm = index["weight_map"]
        wm.pop(q + ".weight")
        wm.update({q + p: "model.safetensors" for p in (".qweight", ".qzeros", ".scales")})
    _edit(ckpt, "model.safetensors.index.json", awq)
    awq_cfg = {"quant_method": "awq", "bits": 4, "group_size": 128}
    _edit(ckpt, "config.json", lambda c: c["llm_config"].update(quantization_config=awq_cfg))
    rows = _rows(ckpt)
    assert rows["weights mapped"].verdict == "pass" and rows["native class"].verdict == "pass"
    row = rows["quantization config"]
    assert row.verdict == "FAIL" and "llm_config.quantization_config (awq)" in row.detail
    assert "vLLM does NOT see it" in row.detail and "--quantization awq" in row.detail

    def top(c):
        c["quantization_config"] = c["llm_config"].pop("quantization_config")
    _edit(ckpt, "config.json", top)
    row = _rows(ckpt)["quantization config"]
    assert row.verdict == "pass" and "transformers sees it, vLLM sees it, SGLang sees it" in row.detail
    _edit(ckpt, "config.json", lambda c: c.pop("quantization_config"))
    assert "no quantization config anywhere" in _rows(ckpt)["quantization config"].detail


def test_value_head_names(tmp_path):
    import torch
    from safetensors.torch import save_file

    from engine.checkpoint_checks import value_head_rows
    from engine.doctor import from_directory

    save_file({"v_head.summary.weight": torch.zeros(1, 16), "v_head.summary.bias": torch.zeros(1)},
              tmp_path / "value_head.safetensors")
    head = from_directory(tmp_path).head
    assert value_head_rows(head, 16)[0].verdict == "pass"
    assert value_head_rows(head, 32)[0].verdict == "FAIL"
    save_file({"score.weight": torch.zeros(1, 16)}, tmp_path / "value_head.safetensors")
    row = value_head_rows(from_directory(tmp_path).head, 16)[0]
    assert row.verdict == "FAIL" and "score.weight [1, 16]" in row.detail


def test_remote_code_is_never_run_by_the_doctor(original_tiny, tmp_path, monkeypatch):
    ckpt = _copy(original_tiny, tmp_path / "orig", weights=False)
    marker = tmp_path / "ran"
    (ckpt / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    _edit(ckpt, "tokenizer_config.json", lambda t: t.update(
        tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}))
    prompts = []
    monkeypatch.setattr("builtins.input", lambda *a: prompts.append(a) or "y")
    row = _rows(ckpt)["tokenizer"]
    assert row.verdict == "FAIL" and "never runs" in row.detail
    assert prompts == [] and not marker.exists()


def test_hub_fetches_only_the_small_files(original_tiny, tmp_path, monkeypatch):
    """The hub path downloads the named small files (never weights, never .py) and reads weight names from
    the index; no index: the safetensors headers, by range request."""
    import huggingface_hub as hub

    from engine.doctor import HUB_FILES, diagnose, hub_files

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    listing = sorted(p.name for p in original_tiny.iterdir()) + [
        "model-00001-of-00015.safetensors", "modeling_skywork_chat.py", "configuration_skywork_chat.py",
        "README.md", "pytorch_model.bin", "examples/a.png"]
    downloaded, headers = [], []

    def download(repo_id, filename, revision=None):
        assert repo_id == "Skywork/Skywork-R1V2-38B" and revision == "abc"
        downloaded.append(filename)
        shutil.copy(original_tiny / filename, snapshot / filename)
        return str(snapshot / filename)

    monkeypatch.setattr(hub, "list_repo_files", lambda repo_id, revision=None: listing)
    monkeypatch.setattr(hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "parse_safetensors_file_metadata", lambda *a, **k: headers.append(a) or 1 / 0)
    assert hub_files(listing) == [f for f in HUB_FILES if f in listing]
    rows = {r.check: r for r in diagnose("Skywork/Skywork-R1V2-38B", revision="abc")}
    assert set(downloaded) <= set(HUB_FILES) and "config.json" in downloaded
    assert not any(f.endswith((".safetensors", ".py", ".bin")) for f in downloaded) and headers == []
    assert rows["weights mapped"].verdict == "pass" and "index" in rows["weights mapped"].detail
    assert rows["context length"].verdict == "pass" and "r1v2-38b" in rows["context length"].detail


def test_hub_errors_say_what_to_do(monkeypatch):
    import huggingface_hub as hub
    from huggingface_hub.errors import GatedRepoError

    from engine.doctor import diagnose
    from tutor.errors import InputError

    def gated(*a, **k):
        err = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(err, "403 gated")
        raise err

    monkeypatch.setattr(hub, "list_repo_files", gated)
    with pytest.raises(InputError) as e:
        diagnose("Skywork/Skywork-VL-Reward-7B")
    assert "accept its terms" in e.value.message("en") and "HF_TOKEN" in e.value.message("zh")


def test_bad_target_is_one_line_and_status_2(tmp_path, capsys):
    rc, out, err = _doctor(capsys, tmp_path / "nowhere" / "x" / "y")
    assert rc == 2 and "neither a checkpoint directory nor a hub id" in err and "Traceback" not in err


def test_a_reward_checkpoint_gets_its_value_head_checked(tmp_path, capsys):
    from engine.reward_tiny import tiny_reward_path

    ckpt = _copy(tiny_reward_path(), tmp_path / "reward", weights=False)
    shutil.copy(tiny_reward_path() / "value_head.safetensors", ckpt)
    rows = _rows(ckpt)
    assert rows["architecture"].verdict == "pass" and "Qwen2.5-VL" in rows["architecture"].detail
    assert rows["value head"].verdict == "pass" and "v_head.summary.weight [1, " in rows["value head"].detail
    assert "think tokens" not in rows and "chat template" not in rows
    (ckpt / "value_head.safetensors").unlink()
    rc, out, err = _doctor(capsys, ckpt)
    assert rc == 1 and "value head" in err and "no value_head.safetensors" in out


def _fake_hub(monkeypatch, src, snapshot):
    import huggingface_hub as hub

    snapshot.mkdir()
    calls = {"download": [], "snapshot": []}

    def download(repo_id, filename, revision=None):
        calls["download"].append(filename)
        shutil.copy(src / filename, snapshot / filename)
        return str(snapshot / filename)

    monkeypatch.setattr(hub, "list_repo_files", lambda repo_id, revision=None: sorted(p.name for p in src.iterdir()))
    monkeypatch.setattr(hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "snapshot_download", lambda *a, **k: calls["snapshot"].append(a) or str(src))
    return calls


def test_a_hub_preset_is_refused_before_its_weights_download(original_tiny, tmp_path, monkeypatch):
    from engine.loading import load_model
    from tutor.errors import InputError

    ckpt = _copy(original_tiny, tmp_path / "hub", weights=False)
    key = "language_model.model.layers.0.self_attn.rotary_emb.inv_freq"
    _edit(ckpt, "model.safetensors.index.json", lambda d: d["weight_map"].update({key: "model.safetensors"}))
    calls = _fake_hub(monkeypatch, ckpt, tmp_path / "snapshot")
    with pytest.raises(InputError) as e:
        load_model("r1v2-38b", quantization=None, device="cpu")
    assert e.value.code == "checkpoint_would_load_wrong" and key in e.value.message("en")
    assert calls["snapshot"] == [] and "config.json" in calls["download"]


def test_context_length_counts_yarn_added_at_load_time(monkeypatch):
    """Where engine.context (helper "budget": YaRN added when loading and launching) is present, its plan
    counts. Here a stand-in with its documented signature, plan_context(text_config, budget, prompt), since
    that module lives on another branch."""
    import sys
    import types

    from engine.checkpoint_checks import context_rows
    from engine.presets import PRESETS

    seen = []

    def plan_context(text_config, budget, prompt):
        seen.append((text_config["max_position_embeddings"], budget, prompt))
        return types.SimpleNamespace(rope_scaling={"rope_type": "yarn", "factor": 4.0}, context=131072)

    monkeypatch.setitem(sys.modules, "engine.context", types.SimpleNamespace(plan_context=plan_context))
    row = context_rows({"llm_config": {"max_position_embeddings": 40960}},
                       replace(PRESETS["r1v2-38b"], max_new_tokens=64000))[0]
    assert row.verdict == "pass" and "131072 positions" in row.detail and "engine.context" in row.detail
    assert seen == [(40960, 64000, 4 * 13 * 256 + 1024)]
