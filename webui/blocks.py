"""``gr.Blocks`` and a component mixin that make a streamed page update cheap.

    from webui.blocks import Blocks, FileMemo
    class Chatbot(FileMemo, gr.Chatbot): ...          # in app.py: Gradio writes a .pyi next to the
    with Blocks(title="R1V Tutor") as demo:           # module of every component class it sees
        chat = Chatbot(...)

A streaming handler of the page yields only the fields that changed (the chat and the status line);
every other output of the event is left out, which Gradio treats as ``gr.skip()``. Gradio 6 answers a
skipped output by building a fresh copy of the component from its constructor arguments and then its
whole config, API schema included (a pydantic JSON schema: ~3 ms for a Chatbot, Gallery or
Dataframe), only to send ``{"__type__": "update"}`` -- "no change" -- to the page. With eight such
outputs that was ~25 ms of CPU and GIL per streamed update, taken from the model decoding next to it
(bench/app_overhead.py). Here a pure skip of an output that is not session state is answered with
that same ``{"__type__": "update"}`` directly, and everything else goes through Gradio unchanged.

Every update also carries the chat's whole value, the student's photo included, and Gradio hashes
each file of an output (twice) to find its copy in the cache: a full read of a stored photo of up to
several MB per update. Components with :class:`FileMemo` remember where each file was cached, by
path, size, modification time and inode, so an unchanged file is hashed once.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from typing import Any

import gradio as gr
from gradio.blocks import Block, convert_component_dict_to_list

SKIP = {"__type__": "update"}  # what gr.skip() returns, and what Gradio sends the page for it


def _skipped(value: Any) -> bool:
    return isinstance(value, dict) and value == SKIP


class Blocks(gr.Blocks):
    """``gr.Blocks`` that sends "no change" for a skipped output without rebuilding the component."""

    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> list[Any]:
        outputs = list(block_fn.outputs)
        if len(outputs) < 2 or block_fn.batch or getattr(block_fn, "is_validator_function", False):
            return await super().postprocess_data(block_fn, predictions, state)
        preds = predictions
        if _skipped(preds):  # one gr.skip() for every output
            preds = [dict(SKIP) for _ in outputs]
        elif isinstance(preds, dict) and preds and all(isinstance(k, Block) for k in preds):
            preds = convert_component_dict_to_list(outputs, preds)
        if not isinstance(preds, list | tuple) or len(preds) != len(outputs):
            return await super().postprocess_data(block_fn, predictions, state)  # Gradio's own error
        keep = [i for i, (block, p) in enumerate(zip(outputs, preds, strict=True))
                if not (_skipped(p) and not block.stateful)]
        if len(keep) == len(outputs):
            return await super().postprocess_data(block_fn, list(preds), state)
        done: list[Any] = []
        if keep:
            sub = copy.copy(block_fn)  # the same event, narrowed to the outputs that changed
            sub.outputs = [outputs[i] for i in keep]
            vals = [preds[i] for i in keep]
            done = await super().postprocess_data(sub, vals if len(keep) > 1 else vals[0], state)
        it = iter(done)
        kept = set(keep)
        return [next(it) if i in kept else dict(SKIP) for i in range(len(outputs))]


class StockFrontend:
    """A subclassed component must name the stock Gradio component it extends: Gradio takes a
    template's first base class as its frontend, and the browser would ask for one that does not
    exist (the page never finishes loading)."""

    is_template = True

    def _stock_name(self) -> str:
        return next(c for c in type(self).__mro__ if c.__module__.startswith("gradio.")).__name__.lower()

    def get_block_name(self) -> str:
        return self._stock_name()

    def get_block_class(self) -> str:
        return self._stock_name()


_MEMO: OrderedDict[tuple, str] = OrderedDict()  # (cache dir, path, size, mtime, inode) -> cached copy
_MEMO_MAX = 4096
_MEMO_LOCK = threading.Lock()


def _memo_key(cache_dir: Any, path: Any) -> tuple | None:
    if path is None or isinstance(path, str) and path.startswith(("http://", "https://")):
        return None
    try:
        real = os.path.abspath(str(path))
        st = os.stat(real)
    except (OSError, ValueError, TypeError):
        return None
    return (str(cache_dir), real, st.st_size, st.st_mtime_ns, st.st_ino)


class FileMemo(StockFrontend):
    """Remembers Gradio's cached copy of each file this component serves (see the module docstring)."""

    def _memo_get(self, key: tuple | None) -> str | None:
        if key is None:
            return None
        with _MEMO_LOCK:
            hit = _MEMO.get(key)
            if hit is not None:
                _MEMO.move_to_end(key)
        if hit is None or not os.path.exists(hit):
            return None
        try:
            os.utime(hit)  # as Gradio does on a hit: the cache ages files by ctime
        except OSError:
            pass
        self.temp_files.add(hit)  # type: ignore[attr-defined]
        return hit

    def _memo_put(self, key: tuple | None, cached: str | None) -> None:
        if key is None or cached is None:
            return
        with _MEMO_LOCK:
            _MEMO[key] = cached
            while len(_MEMO) > _MEMO_MAX:
                _MEMO.popitem(last=False)

    def move_resource_to_block_cache(self, url_or_file_path: Any) -> Any:
        key = _memo_key(self.GRADIO_CACHE, url_or_file_path)  # type: ignore[attr-defined]
        hit = self._memo_get(key)
        if hit is not None:
            return hit
        out = super().move_resource_to_block_cache(url_or_file_path)  # type: ignore[misc]
        self._memo_put(key, out)
        return out

    async def async_move_resource_to_block_cache(self, url_or_file_path: Any) -> Any:
        key = _memo_key(self.GRADIO_CACHE, url_or_file_path)  # type: ignore[attr-defined]
        hit = self._memo_get(key)
        if hit is not None:
            return hit
        out = await super().async_move_resource_to_block_cache(url_or_file_path)  # type: ignore[misc]
        self._memo_put(key, out)
        return out

