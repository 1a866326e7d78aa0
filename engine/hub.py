"""Downloads from the Hugging Face hub with refusals explained: a gated repository says what to do.

    from engine.hub import download
    path = download("Skywork/Skywork-VL-Reward-7B", allow_patterns=["*.json"], what=("the reward model", "奖励模型"),
                    local_hint=("pass a local copy with --reward DIR", "用 --reward DIR 指定本地副本"))

Skywork-VL-Reward-7B is gated on the hub ("agree to share your contact information", FACTS.md): its
files answer 401 without a token and 403 with the token of an account that has not accepted the terms,
with ``X-Error-Code: GatedRepo``, which ``huggingface_hub`` raises as ``GatedRepoError``. That is not a
network problem, so :func:`hub_error` says what is: accept the terms on the model page with your
account, then make a token (https://huggingface.co/settings/tokens) and set ``HF_TOKEN`` (or run
``hf auth login``). A token the hub refuses (401 without the gate) and a repository that does not exist
each get their own message; only a real connection failure says "check the network".

``huggingface_hub`` reads ``HF_ENDPOINT`` and ``HF_TOKEN`` itself; tests point ``HF_ENDPOINT`` at a
local server that answers like the hub (``tests/engine/test_hub.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from tutor.errors import EngineError


def _token_set() -> bool:
    if os.environ.get("HF_TOKEN"):
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:  # noqa: BLE001 - no token store: no token
        return False


def hub_error(e: BaseException, repo_id: str, what: tuple[str, str], local_hint: tuple[str, str]) -> EngineError:
    """The EngineError for a failed download of ``repo_id`` (``what``: "the model" in en and zh;
    ``local_hint``: how to use a local copy instead, en and zh)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"https://huggingface.co/{repo_id}"
    w_en, w_zh = what
    h_en, h_zh = local_hint
    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, GatedRepoError):
        if _token_set():
            return EngineError(
                "hub_gated",
                f"{w_en[0].upper() + w_en[1:]} {repo_id} is gated and the hub refused your token ({status}): the "
                f"account of HF_TOKEN has not accepted its terms. Open {page} signed in with that account, accept "
                f"the terms (\"agree and access\"), then run this again. Or {h_en}.",
                f"{w_zh} {repo_id} 需要授权访问，Hub 拒绝了你的令牌（{status}）：HF_TOKEN 对应的账号还没有同意其使用条款。"
                f"请用该账号登录并打开 {page}，同意条款（“agree and access”）后再运行。也可以{h_zh}。",
                detail=repr(e),
            )
        return EngineError(
            "hub_gated",
            f"{w_en[0].upper() + w_en[1:]} {repo_id} is gated: the hub gives its files only to signed-in accounts "
            f"that accepted its terms ({status}). 1) Open {page} signed in and accept the terms. 2) Make a read "
            "token at https://huggingface.co/settings/tokens and set it: `export HF_TOKEN=hf_...` (or run "
            f"`hf auth login`). 3) Run this again. Or {h_en}.",
            f"{w_zh} {repo_id} 需要授权访问：Hub 只向已登录并同意其条款的账号提供文件（{status}）。"
            f"1）登录后打开 {page} 并同意条款；2）在 https://huggingface.co/settings/tokens 创建只读令牌并设置："
            f"`export HF_TOKEN=hf_...`（或运行 `hf auth login`）；3）重新运行。也可以{h_zh}。",
            detail=repr(e),
        )
    if isinstance(e, RevisionNotFoundError):
        return EngineError("hub_revision_not_found", f"{repo_id} has no such revision on the hub.",
                           f"Hub 上的 {repo_id} 没有这个版本。", detail=repr(e))
    if isinstance(e, RepositoryNotFoundError):  # 404, or 401 for a private repository
        return EngineError(
            "hub_not_found",
            f"The hub has no repository {repo_id} that this account can see ({status}). Check the name; for a "
            f"private repository set HF_TOKEN to a token that can read it. Or {h_en}.",
            f"Hub 上没有当前账号可见的仓库 {repo_id}（{status}）。请检查名称；私有仓库请把 HF_TOKEN 设为有读取权限的令牌。"
            f"也可以{h_zh}。",
            detail=repr(e),
        )
    if isinstance(e, HfHubHTTPError) and status in (401, 403):
        return EngineError(
            "hub_unauthorized",
            f"The hub refused the request for {repo_id} ({status}): the token in HF_TOKEN is invalid or lacks "
            f"read access. Make a new read token at https://huggingface.co/settings/tokens and set HF_TOKEN. Or {h_en}.",
            f"Hub 拒绝了对 {repo_id} 的请求（{status}）：HF_TOKEN 中的令牌无效或没有读取权限。请在 "
            f"https://huggingface.co/settings/tokens 创建新的只读令牌并设置 HF_TOKEN。也可以{h_zh}。",
            detail=repr(e),
        )
    return EngineError(
        "download_failed",
        f"Could not download {w_en} {repo_id}. Check the network (and the disk space), or {h_en}.",
        f"无法下载{w_zh} {repo_id}。请检查网络（以及磁盘空间），或{h_zh}。",
        detail=repr(e),
    )


def download(repo_id: str, *, what: tuple[str, str], local_hint: tuple[str, str], **kw) -> Path:
    """``huggingface_hub.snapshot_download(repo_id, **kw)``; a failure is :func:`hub_error`'s EngineError."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, **kw))
    except Exception as e:  # gated, not found, offline, disk full...
        raise hub_error(e, repo_id, what, local_hint) from e
