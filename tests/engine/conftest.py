import pytest


@pytest.fixture(scope="session")
def tiny_dir():
    from engine.tiny import tiny_path

    return tiny_path(0)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_dir):
    from engine.loading import load_model

    return load_model("tiny-random", quantization=None, device="cpu")
