"""Static checks, restricted loading and limited execution of generated code actions.

`policy` holds the static check, `loader` the restricted namespace, `proxy` what code sees
of the skill API, `limits` the per-call and worker limits, `run` the limited call and its
structured errors (their kinds and the refusal exception live in `errors`).
"""

from rlgpt.actions.sandbox.errors import BREACH_KINDS, CodeActionRejected, ErrorKind
from rlgpt.actions.sandbox.limits import (
    TICK_SECONDS,
    SandboxLimits,
    address_space_mb,
    enter_worker_mode,
    hard_stop_seconds,
    in_worker_mode,
    set_worker_report,
    worker_report_fd,
)
from rlgpt.actions.sandbox.loader import SAFE_BUILTINS, CodeAction, load_code_action
from rlgpt.actions.sandbox.policy import (
    FORBIDDEN_ATTRIBUTE_PREFIXES,
    FORBIDDEN_ATTRIBUTES,
    FORBIDDEN_NAMES,
    MAX_EXPONENT,
    check_code,
    defines_available,
)
from rlgpt.actions.sandbox.proxy import TRACE_CALLS, format_calls, make_api_proxy, plain_value
from rlgpt.actions.sandbox.run import (
    Outcome,
    call_code_function,
    check_available,
    run_code_action,
    worker_death_error,
)

__all__ = [
    "BREACH_KINDS",
    "FORBIDDEN_ATTRIBUTES",
    "FORBIDDEN_ATTRIBUTE_PREFIXES",
    "FORBIDDEN_NAMES",
    "MAX_EXPONENT",
    "SAFE_BUILTINS",
    "TICK_SECONDS",
    "TRACE_CALLS",
    "CodeAction",
    "CodeActionRejected",
    "ErrorKind",
    "Outcome",
    "SandboxLimits",
    "address_space_mb",
    "call_code_function",
    "check_available",
    "check_code",
    "defines_available",
    "enter_worker_mode",
    "format_calls",
    "hard_stop_seconds",
    "in_worker_mode",
    "load_code_action",
    "make_api_proxy",
    "plain_value",
    "run_code_action",
    "set_worker_report",
    "worker_death_error",
    "worker_report_fd",
]
