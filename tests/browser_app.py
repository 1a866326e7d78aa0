"""What the browser tests share: Debian's Chromium, its flags, the skip when it is missing, and the app
served on a fresh SQLite store (a context manager each test module's fixtures wrap).

    from tests.browser_app import needs_chromium, serve, chromium
    pytestmark = needs_chromium
    with serve(tmp_dir, Engine("tiny-random"), AppConfig(max_new_tokens=8)) as (url, store): ...
    with chromium() as browser: page = browser.new_page()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                    "(apt-get install -y chromium chromium-driver; .ci/run does this)")


@contextmanager
def serve(root: Path, engine: Any, cfg: Any, prepare: Callable[[Any], None] | None = None) -> Iterator[tuple]:
    """The page on ``engine`` with a store under ``root`` (``prepare(store)`` runs first); (url, store)."""
    from app import build_app, launch_kwargs
    from tutor.store import Store

    store = Store(f"sqlite:///{root / 'r1v.db'}", image_dir=root / "images")
    if prepare is not None:
        prepare(store)
    demo = build_app(engine=engine, store=store, cfg=cfg)
    demo.queue(max_size=8, default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store))
    try:
        yield url, store
    finally:
        demo.close()
        store.close()


@contextmanager
def chromium(**launch: Any) -> Iterator[Any]:
    """Playwright's Chromium driving Debian's binary (no browser download); ``launch`` adds options."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, **launch)
        try:
            yield b
        finally:
            b.close()
