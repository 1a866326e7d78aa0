"""Reproducing the R1V2 recipe: assembly, adapter SFT, MPO, reward model, GRPO with SSB, eval."""
