"""Getting candidate solutions out of a model.

Backends, model presets, checkpoint loading and conversion, reward scoring and reranking. Never
imports Gradio; returns plain dataclasses and streams iterators of events.
"""
