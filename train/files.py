"""Files written whole or not at all: a process killed mid-write leaves the old file or the new."""

import os


def atomic_write(path, text):
    """Write `text` to `path` through a temporary file, synced, then `os.replace`d.

    `os.replace` is atomic on POSIX and Windows, so readers (and a resumed
    run) see either the previous content or `text`, never a torn file.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
