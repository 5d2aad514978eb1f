"""Fixtures of the unit tests: the scripted chat model, registered as the `scripted` backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlgpt import plugins
from tests.fakes import ScriptedBackend, ScriptedChatModel


@pytest.fixture
def scripted() -> Iterator[ScriptedChatModel]:
    """A scripted model behind every `scripted:<name>` model string; set `.answers`."""
    model = ScriptedChatModel(answers=[])
    plugins.llms.register("scripted", ScriptedBackend(model))
    yield model
    plugins.llms.unregister("scripted")
