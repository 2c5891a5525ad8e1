"""Wall-clock check of the offline segmenter refusal, kept apart from the semantic tests' logic.

A cold transformers / huggingface_hub import on a loaded machine can take longer than the refusal
itself, so the imports happen before the clock starts.
"""

from __future__ import annotations

import time

import pytest

from desra.core.errors import SegmenterError
from desra.detect import semantic


def test_offline_hub_id_is_refused_without_retries(monkeypatch):
    # Wall clock, so measured only after the imports: a cold transformers / huggingface_hub import
    # on a loaded machine can take longer than the refusal itself. transformers' five retries with
    # back-off would take far longer than 10 s; desra's one refused TCP probe takes milliseconds.
    import huggingface_hub  # noqa: F401
    import transformers  # noqa: F401

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(SegmenterError, match="cannot be reached"):
        semantic.load_segmenter("desra-test/segformer-not-cached")
    assert time.monotonic() - start < 10
