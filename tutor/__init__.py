"""The tutor's domain: intake, prompts, answer checking, tutoring modes, rendering, history.

Pure Python: nothing here imports Gradio or loads a model, so it is testable in milliseconds.
"""
