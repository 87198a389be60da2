"""Measure where a synced LevelDB write stops beating a file + fsync + rename + dir fsync.

Prints JSON: for each value size, milliseconds per durable write both ways, and the LevelDB
read time.  The worker's --inline-max default (64 KiB) comes from this crossover; see
docs/format.md.  Run: python benchmarks/inline_threshold.py [--dir DIR]
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import plyvel

SIZES = [1 << 10, 16 << 10, 64 << 10, 128 << 10, 256 << 10, 1 << 20, 4 << 20]


def measure(base: str, size: int) -> dict[str, float]:
    """Return ms per synced LevelDB put, per durable file write, and us per LevelDB get."""
    data = os.urandom(size)
    count = max(20, min(300, (64 << 20) // size))
    db = plyvel.DB(os.path.join(base, f"db{size}"), create_if_missing=True)
    files = os.path.join(base, f"f{size}")
    os.makedirs(files)
    dir_fd = os.open(files, os.O_RDONLY | os.O_DIRECTORY)
    try:
        started = time.perf_counter()
        for i in range(count):
            db.put(b"k%d" % i, data, sync=True)
        leveldb_ms = (time.perf_counter() - started) / count * 1e3
        started = time.perf_counter()
        for i in range(count):
            tmp = os.path.join(files, f"t{i}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, tmp + ".blob")
            os.fsync(dir_fd)
        file_ms = (time.perf_counter() - started) / count * 1e3
        started = time.perf_counter()
        for i in range(count):
            db.get(b"k%d" % i)
        read_us = (time.perf_counter() - started) / count * 1e6
    finally:
        os.close(dir_fd)
        db.close()
    return {
        "size": size,
        "leveldb_sync_ms": round(leveldb_ms, 3),
        "file_fsync_rename_ms": round(file_ms, 3),
        "leveldb_read_us": round(read_us, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="directory on the disk to measure (default: a temp dir)")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="kfs-inline-", dir=args.dir)
    try:
        results = [measure(base, size) for size in SIZES]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"benchmark": "inline_threshold", "results": results}, indent=2))


if __name__ == "__main__":
    main()
