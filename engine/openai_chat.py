"""The OpenAI chat API as the HTTP backend speaks it: request messages, image parts, reply deltas, errors.

    from engine.openai_chat import to_openai_messages
    chat = to_openai_messages(tutor_messages, [data_url, ...], max_tiles=6)

``tutor.prompts`` messages become OpenAI chat messages with base64 ``data:`` image parts (the server
never fetches a URL); ``_map_error`` turns an openai / HTTP-library exception into an ``EngineError``
with the page's English and Chinese message. Used by ``engine.http.HttpEngine`` (and the reward
client's image encoding); no network here.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from tutor.errors import EngineError, InputError


def _api_url(base_url: str) -> str:
    parts = urlsplit(str(base_url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(
            "bad_server_url",
            f"The server address must be an http(s) URL such as http://localhost:30000 (got {base_url!r}).",
            f"服务器地址必须是 http(s) 网址，例如 http://localhost:30000（收到 {base_url!r}）。",
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _data_url(item, fmt: str) -> str:
    from PIL import Image

    from tutor.intake import IntakeImage, load_image

    if isinstance(item, str) and item.startswith("data:image/"):
        return item
    if not isinstance(item, IntakeImage):
        item = load_image(item.convert("RGB") if isinstance(item, Image.Image) else item)
    return item.data_url(fmt)


def _max_tiles(chat: list[dict]) -> int | None:
    """The ``max_dynamic_patch`` that ``to_openai_messages`` put on the chat's images, if any."""
    for msg in chat:
        for part in msg["content"] if isinstance(msg["content"], list) else []:
            tiles = (part.get("image_url") or {}).get("max_dynamic_patch") if part.get("type") == "image_url" else None
            if tiles:
                return tiles
    return None


def to_openai_messages(messages: list[dict], image_urls: Sequence[str], max_tiles: int | None = None) -> list[dict]:
    """``tutor.prompts`` messages -> OpenAI chat messages; image parts filled with ``image_urls`` in order."""
    out, k = [], 0
    for msg in messages:
        content = msg["content"]
        if isinstance(content, str):
            out.append({"role": msg["role"], "content": content})
            continue
        parts = []
        for p in content:
            if p.get("type") == "image":
                if k >= len(image_urls):
                    break
                image = {"url": image_urls[k]}
                if max_tiles:
                    image["max_dynamic_patch"] = max_tiles  # SGLang's InternVL reads it per image
                parts.append({"type": "image_url", "image_url": image})
                k += 1
            else:
                parts.append({"type": "text", "text": p["text"]})
        out.append({"role": msg["role"], "content": parts})
    n_slots = sum(1 for m in messages if not isinstance(m["content"], str) for p in m["content"]
                  if p.get("type") == "image")
    if n_slots != len(image_urls):
        raise InputError(
            "image_count_mismatch",
            f"The prompt has room for {n_slots} image(s) but {len(image_urls)} were given.",
            f"提示词中有 {n_slots} 个图片位置，但提供了 {len(image_urls)} 张图片。",
        )
    return out


def _delta_text(delta, *names: str) -> str:
    for name in names:
        value = getattr(delta, name, None)
        if value is None:
            value = (getattr(delta, "model_extra", None) or {}).get(name)
        if value:
            return value
    return ""


def retry_delay(backoff: float, attempt: int, retry_after: str | None = None) -> float:
    """Seconds before retry ``attempt`` (0-based): exponential from ``backoff``, at most 8 s, or the
    server's ``Retry-After`` seconds (at most 30). One rule for the policy and the reward servers."""
    if retry_after and retry_after.replace(".", "", 1).isdigit():
        return min(float(retry_after), 30.0)
    return min(backoff * 2 ** attempt, 8.0)


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def _map_error(e: BaseException, url: str) -> EngineError:
    """An openai/httpx exception -> EngineError with a message for the page."""
    import openai

    detail = _short(e)
    if isinstance(e, EngineError):
        return e
    if isinstance(e, openai.APITimeoutError):
        return EngineError("server_timeout", f"The model server at {url} did not answer in time. Please try again.",
                           f"{url} 上的模型服务器响应超时，请重试。", detail)
    if isinstance(e, openai.APIConnectionError):
        return EngineError(
            "server_unreachable",
            f"Cannot reach the model server at {url}. Check the address and that the server is running "
            "(python -m engine serve ...).",
            f"无法连接 {url} 上的模型服务器。请检查地址，并确认服务器已启动（python -m engine serve ...）。", detail)
    if isinstance(e, openai.APIStatusError):
        status = e.status_code
        if status in (401, 403):
            return EngineError("server_unauthorized", f"The model server at {url} refused the API key ({status}).",
                               f"{url} 上的模型服务器拒绝了 API 密钥（{status}）。", detail)
        if status == 429:
            return EngineError("server_busy", "The model server is busy (too many requests). Please try again soon.",
                               "模型服务器繁忙（请求过多），请稍后再试。", detail)
        if status >= 500:
            return EngineError("server_error", f"The model server at {url} failed ({status}). Please try again.",
                               f"{url} 上的模型服务器出错（{status}），请重试。", detail)
        return EngineError("server_rejected", f"The model server at {url} rejected the request ({status}).",
                           f"{url} 上的模型服务器拒绝了请求（{status}）。", detail)
    return EngineError("server_error", f"Talking to the model server at {url} failed.",
                       f"与 {url} 上的模型服务器通信失败。", detail)
