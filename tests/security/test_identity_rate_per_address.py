"""Issue 22, Medium 4: the model-request rate is limited per client address (``R1V_RATE_PER_ADDRESS``,
6 here), not only per visitor id, which a caller mints at will (each request a new cookie and id).
Before the fix every fresh id had its own full allowance.

    python -m pytest tests/security/test_identity_rate_per_address.py -q
"""

from __future__ import annotations

import uuid

import pytest

from tests.security.attack import Api
from tests.security.test_identity_queue_flood import app  # noqa: F401 - the fixture: python app.py

pytestmark = pytest.mark.parametrize("app", [{"R1V_RATE_PER_ADDRESS": "6"}], indirect=True)


def test_fresh_ids_do_not_escape_the_rate_limit_of_their_address(app):  # noqa: F811 - the fixture
    from gradio_client import Client

    api = Api(app)
    statuses = []
    for _ in range(8):  # one after another, each a new visitor (new cookie, new id) from one address
        c = Client(app, verbose=False, headers={"X-Forwarded-For": "192.0.2.77"})
        args = api.data("ask", ["en", None, [], "rate 3+3", "math", "auto", "en", 1], uuid.uuid4().hex)
        statuses.append(c.predict(*args, api_name="/ask")[1])
    done = sum(s.startswith("Done in") for s in statuses)
    limited = sum("Too many requests" in s for s in statuses)
    print(f"\n8 fresh ids from one address: {done} answered, {limited} rate-limited")
    assert done == 6 and limited == 2, statuses
