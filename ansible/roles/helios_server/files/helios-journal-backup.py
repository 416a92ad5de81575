#!/usr/bin/env python3
"""Snapshot the Helios journal(s) into /var/backups/helios/<YYYYmmddTHHMMSSZ>/ (run by helios-backup.service).

Each snapshot holds: journal-*.sqlite copied with SQLite's online backup API (consistent while the service
writes), a copy of helios.env, the release id, and SHA256SUMS. Old snapshots beyond --keep are removed.
Standard library only.
"""

import argparse
import hashlib
import os
import shutil
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

SNAPSHOT_FORMAT = "%Y%m%dT%H%M%SZ"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/helios"))
    parser.add_argument("--backup-dir", type=Path, default=Path("/var/backups/helios"))
    parser.add_argument("--env-file", type=Path, default=Path("/etc/helios/helios.env"))
    parser.add_argument("--current", type=Path, default=Path("/opt/helios/current"))
    parser.add_argument("--keep", type=int, default=72)
    args = parser.parse_args()
    os.umask(0o077)

    stamp = datetime.now(timezone.utc).strftime(SNAPSHOT_FORMAT)
    target = args.backup_dir / stamp
    partial = args.backup_dir / f".{stamp}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700, parents=True)

    journals = sorted(args.state_dir.glob("journal-*.sqlite"))
    for journal in journals:
        backup_sqlite(journal, partial / journal.name)
    if args.env_file.is_file():
        shutil.copy2(args.env_file, partial / "helios.env")
    release = os.path.basename(os.path.realpath(args.current)) if args.current.exists() else "none"
    (partial / "release").write_text(release + "\n")
    sums = [f"{sha256(p)}  {p.name}" for p in sorted(partial.iterdir()) if p.is_file()]
    (partial / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    partial.rename(target)

    snapshots = sorted(p for p in args.backup_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in snapshots[: max(0, len(snapshots) - args.keep)]:
        shutil.rmtree(old)
    print(f"helios backup {target}: {len(journals)} journal(s), release {release}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
