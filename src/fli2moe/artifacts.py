"""Atomic, deterministic writes of every stage output.

A crashed or interrupted stage must never leave a half-written file that a later stage (or DVC)
takes for a result, so every write goes to a temporary file and is renamed into place. JSON is
written with sorted keys; safetensors without metadata, so identical content gives identical bytes.

Temporaries live in the scratch folder `.tmp/` at the repository root (git and DVC ignore it), never
beside their target: a stage killed with -9 leaves its temporaries behind, and one left inside a
tracked folder (features/, checkpoints/, metrics/) would enter the hash of every stage depending on it,
while `dvc repro` restoring that stage from the run-cache would never remove it. Each temporary is
named after its target and locked while its writer runs, so the next write of the same target
recognises the stale ones (unlocked) and removes them. Outputs get the ordinary modes (0666 / 0777
less the umask).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import struct
from pathlib import Path
from typing import IO, Iterator
from urllib.parse import quote

import numpy as np

SCRATCH = ".tmp"  # under the repository root; listed in .gitignore and .dvcignore
# Characters of a target's name kept in its temporaries' names (file names end at 255 bytes). Two targets
# cut to the same key can only remove each other's stale temporaries: live ones are locked.
_MAX_KEY = 200

# safetensors dtype names of the numpy dtypes the feature sets use, in the order in which the
# reference library lays tensors out (its dtype enum, descending; ties broken by name).
_SAFETENSORS_DTYPES = {
    np.dtype(np.int64): "I64",
    np.dtype(np.float64): "F64",
    np.dtype(np.float32): "F32",
    np.dtype(np.int32): "I32",
    np.dtype(np.float16): "F16",
    np.dtype(np.bool_): "BOOL",
}
_LAYOUT_RANK = {dtype: rank for rank, dtype in enumerate(_SAFETENSORS_DTYPES)}


def scratch_for(path: str | Path) -> tuple[Path, str]:
    """(folder, key): where the temporaries of `path` go and the prefix of their names there.

    The folder is `.tmp/` under the nearest folder above `path` holding dvc.yaml (the repository root,
    from which DVC runs the stages), created if needed, and the key the target's path from that root,
    %-quoted so that it holds no "/" nor "+" (the separator of the random part). Beside `path`, under a
    hidden name, when no such root exists, when the scratch folder lies on another filesystem (os.replace
    is atomic only within one) or when `path` is itself inside the scratch folder (a file of a folder
    being filled, removed with it). `path`'s parent folder must exist.
    """
    path = Path(os.path.abspath(path))
    root = next((folder for folder in path.parents if (folder / "dvc.yaml").is_file()), None)
    if root is not None and not path.is_relative_to(root / SCRATCH):
        scratch = root / SCRATCH
        scratch.mkdir(exist_ok=True)
        if scratch.stat().st_dev == path.parent.stat().st_dev:
            return scratch, quote(path.relative_to(root).as_posix(), safe="")[:_MAX_KEY]
    return path.parent, "." + quote(path.name, safe="")[:_MAX_KEY]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _lock(path: Path, wait: bool) -> int | None:
    """A descriptor holding an exclusive lock on `path` (released when closed or when the process dies),
    or None if another process holds it and `wait` is False."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_stale(scratch: Path, key: str) -> None:
    """Remove the temporaries of the target `key` that no running writer holds (left by a killed run)."""
    for entry in scratch.iterdir():
        if entry.name.rpartition("+")[0] != key:
            continue
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile by another writer
            fd = _lock(entry, wait=False)
            if fd is not None:
                try:
                    _remove(entry)
                finally:
                    os.close(fd)


def _new_temporary(path: str | Path, folder: bool = False) -> tuple[Path, int]:
    """Create an empty temporary file (or folder) for the target `path`, locked by this process.

    Returns the temporary and the descriptor holding its lock: close it once the temporary is renamed
    onto `path` or removed. Stale temporaries of the same target are removed first. Creates `path`'s
    parent folder. Mode 0666 (folder 0777) less the umask, as any ordinary output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch, key = scratch_for(path)
    _remove_stale(scratch, key)
    tmp = scratch / f"{key}+{secrets.token_hex(4)}"
    if folder:
        os.mkdir(tmp)
    else:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return tmp, _lock(tmp, wait=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file for `path` (see the module docstring); it is renamed onto `path` only if
    the block succeeds, and removed otherwise."""
    tmp, lock = _new_temporary(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        os.close(lock)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; it replaces `path` whole only if the block succeeds.

    An interrupted run leaves the previous folder intact and no mixture of old and new files.
    """
    path = Path(path)
    tmp, lock = _new_temporary(path, folder=True)
    old = tmp.with_name(f"{tmp.name}.old")  # same key: removed as stale if a run dies between the renames
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        os.close(lock)


def write_json(path: str | Path, obj) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """Rows with the same keys, columns in the first row's key order (for DVC plots)."""
    import csv

    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


class SafetensorsStreamWriter:
    """Write a safetensors file whose leading dimension grows batch by batch.

    The number of rows is only known at the end (undecodable samples are skipped on the way), and
    holding a whole split in memory would tie peak memory to the dataset size. So each tensor's
    rows are appended to its own temporary file; `close()` writes the header and streams the parts
    behind it. Peak memory is one batch. The bytes are exactly those `safetensors.torch.save_file`
    writes for the same tensors without metadata (same layout order, header and padding).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._dir, self._lock = _new_temporary(self.path, folder=True)
        self._parts: dict[str, IO] = {}
        self._specs: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}  # name -> (dtype, row shape)
        self.rows = 0

    def append(self, batch: dict[str, np.ndarray]) -> None:
        """Append rows: every array [b, ...] in `batch` must have the same b and the same keys each call."""
        sizes = {a.shape[0] for a in batch.values()}
        if len(sizes) != 1:
            raise ValueError(f"arrays of one batch differ in length: { {k: a.shape for k, a in batch.items()} }")
        if self._specs and set(batch) != set(self._specs):
            raise ValueError(f"batch keys {sorted(batch)} differ from the first batch's {sorted(self._specs)}")
        for name, array in batch.items():
            array = np.ascontiguousarray(array)
            spec = (array.dtype, array.shape[1:])
            if name not in self._specs:
                if array.dtype not in _SAFETENSORS_DTYPES:
                    raise ValueError(f"{name}: dtype {array.dtype} is not supported")
                self._specs[name] = spec
                self._parts[name] = open(self._dir / f"{len(self._parts)}.bin", "wb")
            elif self._specs[name] != spec:
                raise ValueError(f"{name}: rows of {spec} after rows of {self._specs[name]}")
            self._parts[name].write(array.tobytes())
        self.rows += sizes.pop()

    def close(self) -> None:
        """Assemble the file atomically and remove the parts."""
        try:
            order = sorted(self._specs, key=lambda name: (_LAYOUT_RANK[self._specs[name][0]], name))
            header, offset = {}, 0
            for name in order:
                self._parts[name].close()
                dtype, row_shape = self._specs[name]
                nbytes = os.path.getsize(self._parts[name].name)
                header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": [self.rows, *row_shape],
                                "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
            blob = json.dumps(header, separators=(",", ":")).encode()
            blob += b" " * (-len(blob) % 8)  # the format aligns the data section to 8 bytes
            with atomic_open(self.path, "wb") as f:
                f.write(struct.pack("<Q", len(blob)))
                f.write(blob)
                for name in order:
                    with open(self._parts[name].name, "rb") as part:
                        shutil.copyfileobj(part, f, 1 << 20)
        finally:
            self.abort()

    def abort(self) -> None:
        for part in self._parts.values():
            part.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
