"""Run as the owner of the state directory, so files root creates there stay readable by the service."""

from __future__ import annotations

import os
from pathlib import Path


def drop_to_state_owner(state_dir: Path) -> None:
    """As root on a server (``helios emergency-stop --direct``, ``helios audit``), become user ``helios``."""
    if os.geteuid() != 0 or not state_dir.exists():
        return
    st = state_dir.stat()
    if st.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
