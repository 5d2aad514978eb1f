"""The static check: what generated code may mention, define and call."""

from __future__ import annotations

import ast
from collections.abc import Collection

from rlgpt.actions.sandbox.errors import CodeActionRejected
from rlgpt.actions.sandbox.limits import SandboxLimits

# Names generated code may never mention: they reach interpreter internals, files or
# dynamic code, or are reflective enough to walk to them.
FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "exec",
        "eval",
        "compile",
        "open",
        "globals",
        "locals",
        "vars",
        "dir",
        "getattr",
        "setattr",
        "delattr",
        "hasattr",
        "__import__",
        "input",
        "breakpoint",
        "help",
        "memoryview",
        "type",
        "object",
        "super",
        "print",
        "exit",
        "quit",
    }
)

# str.format / format_map resolve `{0.attr}` fields at run time, which would bypass the
# static attribute check; f-strings are checked like any expression instead.
# `cell_contents` reads a closure cell; `tofile`/`dump`/`ctypes` are numpy's file and raw
# memory doors (skill results are converted to plain Python values, this is a second fence).
FORBIDDEN_ATTRIBUTES: frozenset[str] = frozenset(
    {"format", "format_map", "mro", "cell_contents", "tofile", "dump", "dumps", "ctypes"}
)

# Frame, code, generator and traceback attributes lead from a generator expression to the
# frames (and globals) of the caller.
FORBIDDEN_ATTRIBUTE_PREFIXES: tuple[str, ...] = ("f_", "gi_", "cr_", "ag_", "co_", "tb_")

MAX_EXPONENT = 64

_FORBIDDEN_NODES: dict[type[ast.AST], str] = {
    ast.Import: "import",
    ast.ImportFrom: "import",
    ast.Try: "try",
    ast.TryStar: "try",
    ast.With: "with",
    ast.AsyncWith: "async with",
    ast.ClassDef: "class",
    ast.Lambda: "lambda",
    ast.Global: "global",
    ast.Nonlocal: "nonlocal",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.AsyncFunctionDef: "async def",
    ast.AsyncFor: "async for",
    ast.Await: "await",
}


def _reject(message: str, node: ast.AST | None = None) -> CodeActionRejected:
    return CodeActionRejected("static", message, getattr(node, "lineno", None))


def _api_names(tree: ast.Module) -> set[str]:
    """The names under which the skill API is reachable: `api` and run/available's first param."""
    names = {"api"}
    for node in tree.body:
        if (
            isinstance(node, ast.FunctionDef)
            and node.name in ("run", "available")
            and node.args.args
        ):
            names.add(node.args.args[0].arg)
    return names


def _is_literal(node: ast.AST | None) -> bool:
    """A constant or a display (tuple/list/set/dict) of literals: evaluates instantly."""
    if node is None or isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_is_literal(k) for k in node.keys) and all(_is_literal(v) for v in node.values)
    return False


def _check_signature(node: ast.FunctionDef) -> None:
    """Everything evaluated when a `def` runs (defaults, annotations) must be instant."""
    if node.decorator_list:
        raise _reject("decorators are not allowed in code actions", node)
    args = node.args
    for default in [*args.defaults, *args.kw_defaults]:
        if not _is_literal(default):
            raise _reject("default values must be literal constants", default or node)
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    every += [a for a in (args.vararg, args.kwarg) if a is not None]
    annotations: list[ast.expr | None] = [a.annotation for a in every]
    annotations.append(node.returns)
    for annotation in annotations:
        if annotation is not None and not isinstance(
            annotation, ast.Name | ast.Constant | ast.Attribute | ast.Subscript
        ):
            raise _reject("annotations must be plain type names", annotation)
        if annotation is not None and any(isinstance(n, ast.Call) for n in ast.walk(annotation)):
            raise _reject("annotations may not call functions", annotation)


def _check_top_level(tree: ast.Module) -> None:
    """Module level may only define functions and literal constants, so loading is instant."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            _check_signature(node)
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign):
            value = node.value
            if value is not None and any(isinstance(n, ast.Call) for n in ast.walk(value)):
                raise _reject("module-level assignments may not call functions", node)
            if not _is_literal(value):
                raise _reject("module-level assignments must be literal constants", node)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if not all(isinstance(t, ast.Name) for t in targets):
                raise _reject("module-level assignments must bind plain names", node)
            continue
        raise _reject(
            f"only functions and constants are allowed at module level, "
            f"found {type(node).__name__}",
            node,
        )


def check_code(
    source: str, skill_names: Collection[str], limits: SandboxLimits | None = None
) -> None:
    """Statically check generated code; raises CodeActionRejected(kind="static") when refused.

    Refused: imports, names or attributes starting with `_` (the bare `_` throwaway
    variable is allowed), reflective or I/O builtins, frame/code/cell/numpy-file attributes,
    attribute assignment, try/with/class/lambda/global/nonlocal/yield/async, decorators,
    attributes of the API that are not skills, `**`/`<<` with a non-constant or large right
    operand, module-level code other than functions and literal constants, non-literal
    defaults, a missing `run`, syntax errors and oversized sources.

    Args:
        source: Python source defining `run(api)` and optionally `available(api)`.
        skill_names: Skill-API method names the code may call.
        limits: Size limit source; the defaults when None.
    """
    limits = limits or SandboxLimits()
    if len(source) > limits.max_source_chars:
        raise _reject(f"source is {len(source)} characters; the limit is {limits.max_source_chars}")
    try:
        tree = ast.parse(source, filename="<code_action>", mode="exec")
    except SyntaxError as exc:
        raise CodeActionRejected("static", f"syntax error: {exc.msg}", exc.lineno) from None
    skills = set(skill_names)
    api_names = _api_names(tree)
    for node in ast.walk(tree):
        for node_type, label in _FORBIDDEN_NODES.items():
            if isinstance(node, node_type):
                raise _reject(f"`{label}` is not allowed in code actions", node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow | ast.LShift):
            # A huge power or shift runs inside one C call, which no alarm can interrupt.
            right = node.right
            small = (
                isinstance(right, ast.Constant)
                and isinstance(right.value, int | float)
                and not isinstance(right.value, bool)
                and abs(right.value) <= MAX_EXPONENT
            )
            if not small:
                raise _reject(
                    f"`**` and `<<` need a constant right operand of at most {MAX_EXPONENT}", node
                )
        if isinstance(node, ast.Name):
            if node.id.startswith("_") and node.id != "_":
                raise _reject(f"names starting with '_' are not allowed: {node.id}", node)
            if node.id in FORBIDDEN_NAMES:
                raise _reject(f"`{node.id}` is not available in code actions", node)
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise _reject(f"attributes starting with '_' are not allowed: {node.attr}", node)
            if node.attr in FORBIDDEN_ATTRIBUTES:
                raise _reject(f"`.{node.attr}` is not allowed (use an f-string to format)", node)
            if node.attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES):
                raise _reject(f"frame and code attributes are not allowed: {node.attr}", node)
            if not isinstance(node.ctx, ast.Load):
                # Attribute stores would let a call keep state on its functions or the API.
                raise _reject(f"assigning or deleting attributes is not allowed: {node.attr}", node)
            if (
                isinstance(node.value, ast.Name)
                and node.value.id in api_names
                and node.attr not in skills
            ):
                raise _reject(
                    f"api.{node.attr} is not a skill; available: {', '.join(sorted(skills))}",
                    node,
                )
        elif isinstance(node, ast.FunctionDef | ast.arg | ast.alias):
            name = node.name if isinstance(node, ast.FunctionDef | ast.alias) else node.arg
            if name.startswith("_") and name != "_":
                raise _reject(f"names starting with '_' are not allowed: {name}", node)
            if name in FORBIDDEN_NAMES:
                raise _reject(f"`{name}` may not be redefined", node)
        elif isinstance(node, ast.MatchClass):
            # `case str(__class__=c)` reads attributes without an attribute expression.
            for attr in node.kwd_attrs:
                if attr.startswith("_") or attr in FORBIDDEN_ATTRIBUTES:
                    raise _reject(f"class patterns may not read `{attr}`", node)
                if attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES):
                    raise _reject(f"frame and code attributes are not allowed: {attr}", node)
        elif (
            isinstance(node, ast.MatchAs | ast.MatchStar)
            and node.name is not None
            and (node.name.startswith("_") or node.name in FORBIDDEN_NAMES)
        ):
            raise _reject(f"`{node.name}` may not be bound", node)
    _check_top_level(tree)
    if not any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
        raise _reject("the code must define `def run(api):` at module level")


def defines_available(source: str) -> bool:
    """True when the source defines a module-level `available` (the action can be masked)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == "available" for n in tree.body)
