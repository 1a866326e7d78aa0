"""The config classes a converted (``convert --to original``) checkpoint carries as its own code.

The R1V2 checkpoints use the InternVL-chat layout (``model_type: internvl_chat``), which transformers
does not know: loaders that read such a config (vLLM's ``SkyworkR1VChatModel``, SGLang's
``InternVLChatModel``, ``AutoConfig.from_pretrained(..., trust_remote_code=True)``) find its class
through ``auto_map`` in config.json. ``engine.convert`` copies this file, unchanged, into the
converted checkpoint as ``configuration_skywork_chat.py`` and points ``auto_map["AutoConfig"]`` at
``SkyworkChatConfig``. It imports only transformers and builds from no arguments too (vLLM loads
``internvl_chat`` with ``has_no_defaults_at_init``). The project itself never runs it: it reads
config.json as plain JSON. Defaults follow FACTS.md (``ps_version='v1'``, ``qkv_bias=False``,
``qk_normalization=True`` when a key is absent).

    python -c "from transformers import AutoConfig; print(AutoConfig.from_pretrained('DIR', trust_remote_code=True))"
"""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig


class SkyworkVisionConfig(PretrainedConfig):
    """The InternViT vision tower's fields (the names vLLM's ``InternVisionModel`` reads)."""

    model_type = "intern_vit_6b"

    def __init__(self, hidden_size=3200, num_hidden_layers=45, num_attention_heads=25, intermediate_size=12800,
                 hidden_act="gelu", qk_normalization=True, qkv_bias=False, norm_type="rms_norm",
                 layer_norm_eps=1e-6, image_size=448, patch_size=14, num_channels=3, initializer_factor=0.1,
                 initializer_range=1e-10, dropout=0.0, attention_dropout=0.0, drop_path_rate=0.0,
                 use_flash_attn=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_hidden_layers = hidden_size, num_hidden_layers
        self.num_attention_heads, self.intermediate_size = num_attention_heads, intermediate_size
        self.hidden_act, self.qk_normalization, self.qkv_bias = hidden_act, qk_normalization, qkv_bias
        self.norm_type, self.layer_norm_eps = norm_type, layer_norm_eps
        self.image_size, self.patch_size, self.num_channels = image_size, patch_size, num_channels
        self.initializer_factor, self.initializer_range = initializer_factor, initializer_range
        self.dropout, self.attention_dropout, self.drop_path_rate = dropout, attention_dropout, drop_path_rate
        self.use_flash_attn = use_flash_attn


class SkyworkChatConfig(PretrainedConfig):
    """InternVL-chat config: ``vision_config`` (InternViT), ``llm_config`` (the language model's own
    config, a Qwen2 one for R1V2) and the tiling / pixel-shuffle fields."""

    model_type = "internvl_chat"
    sub_configs = {"vision_config": SkyworkVisionConfig, "llm_config": AutoConfig}

    def __init__(self, vision_config=None, llm_config=None, select_layer=-1, force_image_size=448,
                 downsample_ratio=0.5, template="r1v-tutor-chatml", dynamic_image_size=True, use_thumbnail=True,
                 ps_version="v1", min_dynamic_patch=1, max_dynamic_patch=12, use_backbone_lora=0, use_llm_lora=0,
                 **kwargs):
        if isinstance(vision_config, SkyworkVisionConfig):
            self.vision_config = vision_config
        else:
            self.vision_config = SkyworkVisionConfig(**(vision_config or {}))
        if isinstance(llm_config, PretrainedConfig):
            self.llm_config = llm_config
        else:
            llm = dict(llm_config or {"architectures": ["Qwen2ForCausalLM"]})
            llm_type = llm.pop("model_type", "qwen2")
            self.llm_config = AutoConfig.for_model(llm_type, **llm)
        self.select_layer, self.force_image_size = select_layer, force_image_size
        self.downsample_ratio, self.template = downsample_ratio, template
        self.dynamic_image_size, self.use_thumbnail, self.ps_version = dynamic_image_size, use_thumbnail, ps_version
        self.min_dynamic_patch, self.max_dynamic_patch = min_dynamic_patch, max_dynamic_patch
        self.use_backbone_lora, self.use_llm_lora = use_backbone_lora, use_llm_lora
        super().__init__(**kwargs)

    def get_text_config(self, *args, **kwargs):
        """The language model's config (transformers and vLLM ask for the text config by this name)."""
        return self.llm_config
