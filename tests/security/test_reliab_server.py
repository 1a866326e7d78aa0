"""A misbehaving model server cannot hang the page: ``python app.py --server`` on a stub server whose
``/v1/models`` or chat requests never answer, or whose reply never ends.

Page loads never wait on the server (its health is checked in the background, webui/health.py); a
chat request that gets no text is given up at the first-token deadline with a clear message, and a
reply that runs on is stopped at the whole-reply deadline with its text kept (engine/http.py).
Driven over HTTP only: the page's own load event (``tests/security/reliab_app.page_event``) and
gradio_client.
"""

from __future__ import annotations

import time

import pytest

from tests.security.reliab_app import app_process, page_event
from tests.stub_openai import TICK

FIRST_TOKEN_S = 3
REPLY_S = 8


@pytest.fixture(scope="module")
def app(stub, tmp_path_factory):
    stub.hang_models = True  # the server hangs from the start: the app must still come up
    env = {"R1V_FIRST_TOKEN_S": str(FIRST_TOKEN_S), "R1V_REPLY_S": str(REPLY_S), "R1V_LOG_LEVEL": "WARNING"}
    with app_process(tmp_path_factory.mktemp("reliab-server"), "--server", stub.url, env=env) as a:
        yield a


def _client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def _ask(client, question: str, timeout: float) -> tuple[float, list, list]:
    """(seconds, the last output, every output streamed) of one /ask by the client's visitor."""
    job = client.submit("en", None, [], question, "math", "auto", "en", 1, api_name="/ask")
    t0 = time.monotonic()
    out = job.result(timeout=timeout)
    return time.monotonic() - t0, out, job.outputs()


def test_page_loads_at_once_while_the_models_list_hangs(app, stub):
    stub.hang_models, stub.mode = True, "hang"
    for _ in range(3):  # the first and later loads: none waits on the server
        secs, data = page_event(app.url, "load", ["", "en"], timeout=30)
        assert secs < 15, f"page load took {secs:.1f} s"  # before: until the models list answered (600 s)
        banner = next(d for d in data if isinstance(d, str) and "Model" in d)
        assert "not reachable" in banner or "checking" in banner, banner
    time.sleep(9)  # past the monitor's stale limit: the banner says the server is not answering
    _, data = page_event(app.url, "load", ["", "en"], timeout=15)
    banner = next(d for d in data if isinstance(d, str) and "Model" in d)
    assert "has not answered for" in banner, banner


def test_a_chat_request_that_never_answers_ends_with_a_clear_message(app, stub):
    stub.hang_models, stub.mode = True, "hang"
    visitor = _client(app)
    secs, out, _ = _ask(visitor, "Solve 2x + 3 = 7", timeout=60)
    status = out[1]
    assert f"did not start answering within {FIRST_TOKEN_S} s" in status, status
    assert secs < FIRST_TOKEN_S + 15, secs
    # the question was saved for this visitor and is in their history
    hist = visitor.predict("en", api_name="/history")
    assert len(hist) == 1


def test_a_reply_that_never_ends_is_stopped_and_its_text_kept(app, stub):
    stub.hang_models, stub.mode, stub.delay = False, "trickle", 0.2
    secs, out, every = _ask(_client(app), "Solve 2x + 5 = 9", timeout=90)
    status = out[1]
    assert f"took longer than {REPLY_S} s" in status, status
    assert secs < REPLY_S + 20, secs
    assert TICK * 3 in str(every[-2][0])  # the chat shows what was received
    t0 = time.monotonic()
    while stub.disconnects < 1 and time.monotonic() - t0 < 10:
        time.sleep(0.2)
    assert stub.disconnects >= 1  # and the server's stream was closed, not left running
