"""Keep Hugging Face tokens out of everything a person can read: logs on disk and logs in the page.

    (used by finetune/train.py on its own output and by the dashboard on every log line it shows)

HF_TOKEN reaches a job through its environment only. A library that prints it anyway (an error message
quoting a header, a debug dump) is caught here: both the ``hf_...`` shape and the literal values of the
token variables in this process's environment are replaced.
"""

from __future__ import annotations

import os
import re

TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")  # in logs: hide generously
FULL_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")  # in a config: only what really is a token (34 chars)
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
MASK = "hf_***"


def redact(text: str) -> str:
    for name in TOKEN_VARIABLES:
        value = os.environ.get(name, "")
        if len(value) >= 8:  # a short value would blank out ordinary words
            text = text.replace(value, MASK)
    return TOKEN_PATTERN.sub(MASK, text)


def redact_lines(lines: list[str]) -> list[str]:
    return [redact(line) for line in lines]


def looks_like_token(text: str) -> bool:
    return bool(FULL_TOKEN.search(text))
