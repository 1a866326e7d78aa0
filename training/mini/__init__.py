"""Mini-R1V: the R1V2 recipe in miniature, end to end on a CPU, shipped as the ``mini`` preset.

    python -m training.mini                  # data -> stage 0 -> assemble -> sft -> mpo -> reward -> grpo -> report

Modules: ``tasks`` (problem generator, worked solutions, photo-like rendering, splits), ``stage0``
(tokenizer, vision-tower reading pretraining, text-only LM pretraining), ``evaluate`` (held-out
accuracy and reranking), ``report`` (REPORT.md / report.json / report.png), ``__main__`` (the driver).
"""
