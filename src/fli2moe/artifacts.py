"""Atomic, deterministic writes of every stage output.

A crashed or interrupted stage must never leave a half-written file that a later stage (or DVC)
takes for a result, so every write goes to a temporary file in the target folder and is renamed
into place. JSON is written with sorted keys; safetensors without metadata, so identical content
gives identical bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np

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


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; it replaces `path` whole only if the block succeeds.

    An interrupted run leaves the previous folder intact and no mixture of old and new files.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.parts."))
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
