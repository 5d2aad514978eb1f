"""The exit codes of `rlgpt run` (the README's table is checked against this one)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """How `rlgpt run` ended; every code but 1 leaves the run resumable or untouched."""

    #: The run finished and its last evaluation reached the critic's bar (`success_threshold`).
    FINISHED = 0
    #: An unexpected error (a traceback is printed), or the run ended with no evaluation.
    ERROR = 1
    #: Bad flags or config, an unknown task, or a preflight failure: nothing ran, no run folder.
    BAD_CONFIG = 2
    #: The run is paused for review; resume with `--resume ID --answer JSON`.
    REVIEW = 3
    #: The model endpoint failed past its retries; the state is kept, resume once it answers.
    MODEL_UNAVAILABLE = 4
    #: The disk under the runs directory is full; the files are whole, resume after freeing space.
    DISK_FULL = 5
    #: The run finished but its task success is below the critic's bar.
    BELOW_BAR = 6
    #: Interrupted (Ctrl-C); resume with `--resume ID`.
    INTERRUPTED = 130
