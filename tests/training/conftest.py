"""Fixtures for the training tests: the tiny model's processor and a demo dataset."""

import pytest


@pytest.fixture(scope="session")
def tiny_processor():
    from transformers import AutoProcessor

    from engine.tiny import tiny_path

    return AutoProcessor.from_pretrained(tiny_path(0))


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    from training.data import demo_dataset

    return demo_dataset(tmp_path_factory.mktemp("demo"), size=4)
