"""Files the page hands to a DownloadButton (the run's config.yaml), each in a private folder of its own.

.venv/bin/pytest tests/ui/test_escaping.py -q -k download
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

KEEP_DOWNLOADS = 16  # config.yaml folders kept: gradio copies the file into its cache as the handler returns


def download_file(text: str) -> str:
    """``text`` as config.yaml in a new private folder; returns its path for the DownloadButton.

    A fixed, shared name under /tmp would let anyone plant a symlink there and have it overwritten, or read
    another user's config. So each download gets a fresh 0700 folder (mkdtemp) under this process's own
    private root, and the file is created, never reused: O_EXCL | O_NOFOLLOW, mode 0600. The root sits in
    the system temp dir because gradio 6.31 copies returned files from there (allowed_paths stays empty).
    """
    with _downloads_lock:
        folder = Path(tempfile.mkdtemp(dir=_downloads_root()))
        _keep_newest(folder)
    path = folder / "config.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return str(path)


_downloads: dict[str, Any] = {"root": None, "recent": deque()}  # this process's folders, oldest first
_downloads_lock = threading.Lock()  # handlers run in gradio's worker threads


def _downloads_root() -> Path:
    """This process's private folder for downloads, made again if a /tmp cleaner removed it while idle."""
    root = _downloads["root"]
    if root is None or not _is_private_dir(root):
        root = _downloads["root"] = Path(tempfile.mkdtemp(prefix="tuneboard-downloads-"))  # 0700
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _downloads["recent"].clear()  # folders of a lost root are not ours to remove any more
    return root


def _is_private_dir(path: Path) -> bool:
    # Not just is_dir(): once ours is gone, anyone may create a folder of the same (visible) name.
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _keep_newest(folder: Path) -> None:
    """Remember ``folder``, remove those beyond KEEP_DOWNLOADS: config_view runs on every form change."""
    recent = _downloads["recent"]
    recent.append(folder)
    while len(recent) > KEEP_DOWNLOADS:
        shutil.rmtree(recent.popleft(), ignore_errors=True)
