"""Resuming a job directory: which saved settings the checkpoints depend on."""

from __future__ import annotations

import json
from typing import Any

from tf_crnn.config import Params, ParamsError

# Settings that change the variables of the network or the meaning of its outputs: a job directory
# trained with one value cannot be resumed with another.
ARCHITECTURE_KEYS = (
    "input_shape",
    "input_channels",
    "alphabet_units",
    "string_split_delimiter",
    "alphabet_case_fold",
    "conv_filters",
    "rnn_units",
    "rnn_layers",
)


def check_resumable(saved: Params, current: Params, saved_path: str) -> None:
    """Refuses to continue a run whose saved settings would give a different network or alphabet."""
    differing = [key for key in ARCHITECTURE_KEYS if getattr(saved, key) != getattr(current, key)]
    if differing:

        def short(value: Any) -> str:
            text = json.dumps(value, ensure_ascii=False)
            return text if len(text) <= 60 else text[:57] + "..."

        details = "\n".join(
            f"  {key}: saved {short(getattr(saved, key))}, now {short(getattr(current, key))}"
            for key in differing
        )
        raise ParamsError(
            f"The job directory was trained with other settings ({saved_path}); resuming with "
            "these would not fit its checkpoints. Use a new --job-dir, or the saved settings:\n"
            f"{details}"
        )
