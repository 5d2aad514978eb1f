"""Reading model answers: JSON and code extraction, validation and rejection reasons."""

from __future__ import annotations

import ast
import json
import re
from typing import TypeVar

from langchain_core.messages import AIMessage
from pydantic import BaseModel, Field, ValidationError

T = TypeVar("T", bound=BaseModel)


class CodeActionAnswer(BaseModel):
    """A code action as the model writes it: Python source defining `run(api) -> bool`."""

    code: str = Field(
        description="Python source defining `def run(api):` that returns True on success."
    )
    explanation: str = Field(default="", description="One or two sentences on how it works.")


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def strip_fences(text: str) -> str:
    """The body of the first Markdown code fence in `text` (an unclosed one too), else `text`."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def parse_json_answer(raw: str, schema: type[T]) -> T:
    """Parse and validate a JSON answer; tolerates fences, prose around the object and raw
    control characters inside strings.

    Raises:
        ValueError: no JSON object in the text (pydantic's ValidationError is a ValueError).
    """
    text = strip_fences(raw).strip()
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("the answer holds no JSON object") from None
        try:
            data = json.loads(text[start : end + 1], strict=False)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the answer is not valid JSON: {exc}") from None
    return schema.model_validate(data)


def clean_code_answer(code: str) -> str:
    """Normalise a code action and check it compiles and defines `run(api)` at top level.

    Raises:
        ValueError: syntax error, or no top-level `def run(api)`.
    """
    code = strip_fences(code).strip("\n")
    start = code.find("def run(")
    if start > 0 and code[:start].strip() and not code[:start].lstrip().startswith(("import", "#")):
        # Prose before the function (a chatty model): keep only the code.
        code = code[start:]
    code = code.rstrip() + "\n"
    try:
        tree = ast.parse(code)
        compile(tree, "<code_action>", "exec")
    except SyntaxError as exc:
        raise ValueError(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "run" and node.args.args:
            return code
    raise ValueError("the code must define a top-level function `def run(api):`")


def parse_code_text(raw: str) -> CodeActionAnswer:
    """A code action from an answer that is the code itself (grammar-constrained)."""
    return CodeActionAnswer(code=clean_code_answer(raw))


def parse_code_json(raw: str) -> CodeActionAnswer:
    """A code action from a `CodeActionAnswer` JSON answer, its code checked."""
    answer = parse_json_answer(raw, CodeActionAnswer)
    return CodeActionAnswer(code=clean_code_answer(answer.code), explanation=answer.explanation)


def message_text(message: AIMessage) -> str:
    """The answer text of a reply: the first tool call's arguments as JSON, else the text."""
    if message.tool_calls:
        return json.dumps(message.tool_calls[0]["args"])
    if message.invalid_tool_calls:
        return str(message.invalid_tool_calls[0].get("args") or "")
    content = message.content
    if isinstance(content, str):
        return content
    parts = [
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in content
        if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")
    ]
    return "".join(parts)


def describe_invalid(exc: Exception) -> str:
    """Why an answer was rejected, short enough to feed back to the model."""
    if isinstance(exc, ValidationError):
        items = [
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
            for err in exc.errors()[:6]
        ]
        return "; ".join(items)
    return str(exc)[:500]


__all__ = [
    "CodeActionAnswer",
    "clean_code_answer",
    "describe_invalid",
    "message_text",
    "parse_code_json",
    "parse_code_text",
    "parse_json_answer",
    "strip_fences",
]
