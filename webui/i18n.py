"""Interface strings of the web page in Chinese and English, chosen by the visitor.

    from webui.i18n import t, choices
    t("ask", "zh")                       # "解题"
    t("status_model", "en", name="tiny-random", backend="transformers")
    choices("subject", "en")             # [("Math", "math"), ...] for a gr.Dropdown

Every key has both languages (a test checks it); ``lang`` is "zh" or "en" (anything not starting with
"zh" means English). Format fields use ``str.format``.
"""

from __future__ import annotations

LANGS = ("zh", "en")

STRINGS: dict[str, tuple[str, str]] = {  # key: (English, Chinese)
    "title": ("R1V Tutor", "R1V 解题助教"),
    "tagline": ("Photograph a math or science problem: the tutor thinks it through, shows the worked "
                "answer, gives hints and checks your own answer.",
                "拍下一道数学或理科题：助教会一步步思考，给出详细解答，也能给提示、批改你的答案。"),
    "ui_lang": ("Interface language", "界面语言"),
    "photo": ("Photo of the problem (upload, camera or paste; crop before sending)",
              "题目照片（上传、拍照或粘贴；发送前可裁剪）"),
    "rotate_left": ("⟲ Rotate left", "⟲ 向左旋转"),
    "rotate_right": ("⟳ Rotate right", "⟳ 向右旋转"),
    "add_photo": ("➕ Add another photo", "➕ 再加一张照片"),
    "clear_photos": ("Clear photos", "清除照片"),
    "photos": ("Photos of this problem", "本题的照片"),
    "question": ("Question text (optional)", "题目文字（可选）"),
    "question_ph": ("Type the question or anything the photo does not show. Math: $x^2$",
                    "可输入题目或照片中没有的内容。公式写法：$x^2$"),
    "subject": ("Subject", "学科"),
    "ptype": ("Problem type", "题型"),
    "reply_lang": ("Reply language", "回复语言"),
    "n": ("Candidate solutions", "候选解答数"),
    "budget": ("Thinking budget", "思考预算"),
    "budget_info": ("Tokens per candidate. Hard problems can think for tens of thousands; a larger budget "
                    "takes longer.", "每个候选解答的词元数。难题的思考可能长达数万个词元；预算越大，用时越长。"),
    "out_of_budget_thinking": ("⏳ **Ran out of thinking budget.** The model used all {budget} tokens of its "
                               "thinking budget before it finished thinking, so it has no answer yet. Raise "
                               "“Thinking budget” (under the question) and press “Regenerate”.",
                               "⏳ **思考预算用完了。** 模型用完了全部 {budget} 个词元的思考预算，还没想完，所以还没有答案。"
                               "请调高题目下方的“思考预算”，再点“重新生成”。"),
    "out_of_budget_answer": ("⏳ **Ran out of thinking budget.** The model used all {budget} tokens of its budget "
                             "while writing the answer, before it gave a final answer. Raise “Thinking budget” "
                             "(under the question) and press “Regenerate”.",
                             "⏳ **思考预算用完了。** 模型在写解答时用完了全部 {budget} 个词元的预算，还没给出最终答案。"
                             "请调高题目下方的“思考预算”，再点“重新生成”。"),
    "out_of_context": ("⏳ **The model's context is full.** The prompt and the reply reached the {context} "
                       "positions the model can use ({budget} new tokens), before a final answer. Raising the "
                       "budget will not help: use fewer photos or a shorter question.",
                       "⏳ **模型的上下文已满。** 提示和回复用完了模型可用的 {context} 个位置（生成了 {budget} 个新词元），"
                       "还没给出最终答案。调高预算也无济于事：请减少照片或缩短题目。"),
    "ask": ("Solve", "解题"),
    "stop": ("Stop", "停止"),
    "examples": ("Examples: click one to try it", "示例：点击试一试"),
    "ex_photo": ("Photo", "照片"),
    "ex_about": ("Problem", "题目"),
    "ex_lang_zh": ("in Chinese", "中文题"),
    "ex_lang_en": ("in English", "英文题"),
    "chat": ("Tutor", "助教"),
    "chat_ph": ("Your conversation with the tutor appears here.", "与助教的对话会显示在这里。"),
    "thinking": ("💭 Thinking", "💭 思考过程"),
    "thinking_dots": ("…", "…"),
    "final": ("Final answer", "最终答案"),
    "no_final": ("No final answer was found in the reply.", "回复中没有找到最终答案。"),
    "no_answer": ("_The model stopped before writing an answer (it reached its token limit or was stopped)._",
                  "_模型在写出解答之前就停止了（达到长度上限或被停止）。_"),
    "asked": ("Problem", "题目"),
    "candidates": ("Candidate solutions", "候选解答"),
    "cand_cols": ("#|Final answer|Reward|Group|Tokens|Finish|Chosen", "#|最终答案|奖励分|答案组|词元数|结束方式|选中"),
    "why_reward": ("Chosen: #{i}, the highest reward-model score ({score:.3g}) in the largest group of "
                   "agreeing answers ({k} of {n}).",
                   "选中第 {i} 个：在最大的一致答案组中（{n} 个里有 {k} 个一致）奖励模型得分最高（{score:.3g}）。"),
    "why_group": ("Chosen: #{i}, its final answer is the one most candidates agree on ({k} of {n}).",
                  "选中第 {i} 个：它的最终答案得到最多候选解答的认同（{n} 个里有 {k} 个）。"),
    "why_none": ("Chosen: #{i}. No candidate gave a clear final answer, so the first one that finished "
                 "its reasoning is shown.", "选中第 {i} 个：没有候选解答给出明确的最终答案，显示第一个完成推理的解答。"),
    "tutor_tools": ("Keep learning", "继续学习"),
    "hint": ("💡 Next hint", "💡 下一个提示"),
    "my_answer": ("My answer", "我的答案"),
    "my_answer_ph": ("e.g. x = 2, or B", "例如 x = 2，或 B"),
    "work_photo": ("Photo of my work (optional)", "我的解题过程照片（可选）"),
    "check": ("✅ Check my answer", "✅ 批改我的答案"),
    "answer_practice": ("Answer the practice problem", "提交练习题答案"),
    "followup": ("Follow-up question", "追问"),
    "followup_ph": ("Ask about any step…", "对任何一步提问…"),
    "send": ("Send", "发送"),
    "practice": ("📝 Practice problem", "📝 练习题"),
    "regenerate": ("🔄 Regenerate", "🔄 重新解答"),
    "feedback": ("Was this helpful?", "这个解答有帮助吗？"),
    "comment": ("Comment (optional)", "意见（可选）"),
    "up": ("👍", "👍"),
    "down": ("👎", "👎"),
    "thanks": ("Thank you, your feedback was saved.", "谢谢，你的反馈已保存。"),
    "history": ("My problems", "我的题目"),
    "history_empty": ("No problems yet.", "还没有题目。"),
    "photo_tool": ("Photo source: upload, camera or paste", "照片来源：上传、拍照或粘贴"),
    "refresh": ("Refresh", "刷新"),
    "reopen": ("Reopen", "重新打开"),
    "delete": ("Delete", "删除"),
    "export": ("Export as HTML", "导出为 HTML"),
    "export_file": ("Exported page (HTML)", "导出的页面（HTML）"),
    "deleted": ("Deleted.", "已删除。"),
    "deleted_n": ("Deleted #{n}.", "已删除 #{n}。"),
    "opened_n": ("Opened #{n}.", "已打开 #{n}。"),
    "delete_confirm": ("Delete #{n}? Click again to confirm.", "删除 #{n}？再点一次确认。"),
    "delete_again": ("Yes, delete #{n}", "确认删除 #{n}"),
    "pick_first": ("Pick a problem in the list first.", "请先在列表中选择一道题。"),
    "no_problem": ("Ask a problem first.", "请先提出一道题。"),
    "no_attempt": ("There is no answer to rate yet.", "还没有可以评价的解答。"),
    "need_input": ("Add a photo of the problem or type the question.", "请添加题目照片或输入题目文字。"),
    "need_text": ("Please type something first.", "请先输入内容。"),
    "status": ("Status", "状态"),
    "status_model": ("Model: **{name}** · backend: {backend}", "模型：**{name}** · 后端：{backend}"),
    "health_ok": ("server healthy", "服务正常"),
    "health_bad": ("server not reachable: {msg}", "服务无法连接：{msg}"),
    "health_checking": ("checking the server…", "正在检查服务器…"),
    "health_starting": ("starting the model server… ({s} s)", "正在启动模型服务器…（{s} 秒）"),
    "health_lazy": ("loads on the first question", "首次提问时加载"),
    "health_loaded": ("loaded", "已加载"),
    "tiny_banner": ("⚠️ This is the tiny test model with random weights: its answers are random text. "
                    "Start the app with `--model r1v2-38b-nf4` on a GPU or `--server URL` for real answers.",
                    "⚠️ 当前是随机权重的微型测试模型：它的回答是随机文字。要得到真正的解答，请在 GPU 上用 "
                    "`--model r1v2-38b-nf4` 或用 `--server URL` 启动。"),
    "mini_banner": ("ℹ️ This is Mini-R1V, a small model trained on a laptop CPU with this project's recipe. It can "
                    "only read printed photos of simple problems (multi-digit addition, ax+b=c, fractions with "
                    "the same denominator, evaluating f(x)=ax+b, and their multiple-choice versions), and it is "
                    "right only about one time in eight (12% of held-out photos). For gaokao problems use "
                    "`--model r1v2-38b-nf4` on a GPU or `--server URL`.",
                    "ℹ️ 当前是 Mini-R1V：按本项目的训练流程在笔记本 CPU 上训练的小模型。它只能读懂印刷体照片里的简单题"
                    "（多位数加法、ax+b=c、同分母分数、求 f(x)=ax+b 的值，以及它们的选择题形式），"
                    "正确率只有约八分之一（留出测试照片上为 12%）。"
                    "要解高考题，请在 GPU 上用 `--model r1v2-38b-nf4` 或用 `--server URL` 启动。"),
    "thinking_now": ("Thinking… {tokens} tokens", "思考中… 已生成 {tokens} 个词元"),
    "answering_now": ("Writing the answer… {tokens} tokens", "正在写解答… 已生成 {tokens} 个词元"),
    "done": ("Done in {secs:.1f} s.", "完成，用时 {secs:.1f} 秒。"),
    "stopped": ("Stopped.", "已停止。"),
    "stopping": ("Stopping…", "正在停止…"),
    "error_generic": ("Something went wrong on our side. Please try again.", "服务器出了点问题，请重试。"),
    "engine_missing": ("The HTTP backend (engine.http) is not installed in this version, so --server "
                       "cannot be used yet.", "此版本还没有 HTTP 后端（engine.http），暂时无法使用 --server。"),
    "verdict_correct": ("Correct", "正确"),
    "verdict_incorrect": ("Not correct", "不正确"),
    "verdict_unknown": ("Cannot tell", "无法判断"),
    "verdict_unsure": ("Not sure: check it step by step", "不确定：请逐步检查"),
    "hint_n": ("Hint {n}", "提示 {n}"),
    "login_note": ("Signed in as {name}: your history follows your Hugging Face account.",
                   "已登录为 {name}：你的历史记录跟随 Hugging Face 账号。"),
    "auto": ("Auto", "自动"),
    "math": ("Math", "数学"),
    "physics": ("Physics", "物理"),
    "chemistry": ("Chemistry", "化学"),
    "biology": ("Biology", "生物"),
    "single_choice": ("Single choice", "单选题"),
    "multiple_choice": ("Multiple choice", "多选题"),
    "fill_blank": ("Fill in the blank", "填空题"),
    "free_response": ("Free response", "解答题"),
    "lang_zh": ("中文", "中文"),
    "lang_en": ("English", "English"),
}  # fmt: skip

CHOICES: dict[str, tuple[str, ...]] = {
    "subject": ("math", "physics", "chemistry", "biology"),
    "ptype": ("auto", "single_choice", "multiple_choice", "fill_blank", "free_response"),
    "lang": ("zh", "en"),
}


def norm_lang(lang: str | None) -> str:
    """"zh" for anything starting with "zh" (zh-CN, zh_TW ...), else "en"."""
    return "zh" if str(lang or "").lower().startswith("zh") else "en"


def t(key: str, lang: str | None, **fields: object) -> str:
    """The string ``key`` in ``lang``, formatted with ``fields``. An unknown key is a KeyError."""
    en, zh = STRINGS[key]
    text = zh if norm_lang(lang) == "zh" else en
    return text.format(**fields) if fields else text


def choices(kind: str, lang: str | None) -> list[tuple[str, str]]:
    """(label, value) pairs for a dropdown of ``kind`` ("subject", "ptype" or "lang")."""
    return [(t(f"lang_{v}" if kind == "lang" else v, lang), v) for v in CHOICES[kind]]


def lang_from_header(accept_language: str | None) -> str:
    """The interface language a browser asks for first ("zh" or "en") from its Accept-Language header."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en" if (accept_language or "").strip() else "zh"
