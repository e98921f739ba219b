"""An append-only on-disk queue (a spool) of records waiting to be shipped, one per process.

Layout of one spool directory (``<root>/worker-<k>``; a process holds an exclusive ``flock`` on
its ``lock`` file for as long as it runs, so two processes never share one):

- ``segment-<seq>.log``: lines ``<rows> <time_us>\\t<payload>\\n``; the first line of every
  segment is its header (``0 0\\t<header>``, e.g. the column names the payloads use).
- ``acked``: ``<seq> <offset>``: everything before that position has been shipped.

Durability: :meth:`Spool.append` is one ``write(2)`` (no ``fsync``) on the caller's thread, so
a record is safe from the moment it returns against the process dying (``kill -9``, OOM, a
crash); :meth:`Spool.sync` (``fdatasync``, called by the shipping thread at least every
second) bounds what a machine crash or power loss can take to the last second. The
``acked`` file is rewritten atomically (rename) but not fsynced: after a machine crash the
last batches may be shipped again, which the receiving side must tolerate (ClickHouse:
:mod:`stores.clickhouse` keys every row).

A record cut short by a crash mid-write (a last line without its newline in a segment no
longer written to) cannot be shipped: it is skipped and reported (:attr:`SpoolBatch.torn_bytes`).
"""

from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass
from pathlib import Path

SEGMENT_PREFIX, SEGMENT_SUFFIX = "segment-", ".log"
ACKED = "acked"
LOCK = "lock"
SLOT_PREFIX = "worker-"


@dataclass
class SpoolBatch:
    """Records read from one segment, in order, and where the next read starts."""

    header: bytes
    payloads: list[bytes]
    rows: int
    first_time_us: int
    end: tuple[int, int]
    nbytes: int
    torn_bytes: int = 0


def _segment_name(seq: int) -> str:
    return f"{SEGMENT_PREFIX}{seq:012d}{SEGMENT_SUFFIX}"


def _segments(directory: Path) -> list[int]:
    seqs = []
    for path in directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
        digits = path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
        if digits.isdigit():
            seqs.append(int(digits))
    return sorted(seqs)


def _try_lock(directory: Path) -> int | None:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Spool:
    """One spool directory, locked by this process. Writable (:meth:`claim`) for the process's
    own records, or read-only (:meth:`adopt`) to drain what a process that is gone left."""

    def __init__(
        self,
        directory: Path,
        lock_fd: int,
        *,
        header: bytes | None,
        max_bytes: int,
        segment_bytes: int = 8 * 1024 * 1024,
    ):
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock_fd = lock_fd
        self._lock = threading.Lock()
        self._header = header
        self._acked = self._read_acked()
        self.pending_bytes, self.pending_rows = self._scan_pending()
        self._fd: int | None = None
        self._seq = -1
        self._size = 0
        if header is not None:
            existing = _segments(directory)
            self._open_segment(max([self._acked[0], *existing], default=-1) + 1)

    @classmethod
    def claim(
        cls,
        root: Path,
        *,
        header: bytes,
        max_bytes: int,
        preferred: int = 0,
        segment_bytes: int = 8 * 1024 * 1024,
    ) -> Spool:
        """The first free ``worker-<k>`` spool under ``root`` (``preferred`` first), writable."""
        for slot in (preferred, *(k for k in range(10_000) if k != preferred)):
            directory = Path(root) / f"{SLOT_PREFIX}{slot}"
            fd = _try_lock(directory)
            if fd is not None:
                return cls(
                    directory, fd, header=header, max_bytes=max_bytes, segment_bytes=segment_bytes
                )
        raise RuntimeError(f"{root}: no free spool slot")

    @classmethod
    def adopt(cls, directory: Path) -> Spool | None:
        """``directory`` read-only if no process holds it, else None."""
        fd = _try_lock(directory)
        if fd is None:
            return None
        return cls(directory, fd, header=None, max_bytes=0)

    @staticmethod
    def others(root: Path, own: Path) -> list[Path]:
        """Other spool directories under ``root`` that hold segments."""
        if not Path(root).is_dir():
            return []
        return sorted(
            d
            for d in Path(root).glob(f"{SLOT_PREFIX}*")
            if d.is_dir() and d != own and _segments(d)
        )

    # ---------------------------------------------------------------- writing

    def append(self, payload: bytes, *, rows: int, time_us: int) -> bool:
        """Write one record (``payload`` without newlines). False, writing nothing, if the spool
        would grow past ``max_bytes``."""
        line = b"%d %d\t%s\n" % (rows, time_us, payload)
        with self._lock:
            if self._fd is None:
                raise RuntimeError(f"{self.directory}: spool is read-only")
            if self.pending_bytes + len(line) > self.max_bytes:
                return False
            os.write(self._fd, line)
            self._size += len(line)
            self.pending_bytes += len(line)
            self.pending_rows += rows
            if self._size >= self.segment_bytes:
                self._open_segment(self._seq + 1)
        return True

    def _open_segment(self, seq: int) -> None:
        if self._fd is not None:
            os.fdatasync(self._fd)
            os.close(self._fd)
        path = self.directory / _segment_name(seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        header = b"0 0\t%s\n" % self._header
        os.write(self._fd, header)
        self._seq, self._size = seq, len(header)
        self.pending_bytes += len(header)

    def sync(self) -> None:
        """``fdatasync`` the segment being written."""
        with self._lock:
            if self._fd is not None:
                os.fdatasync(self._fd)

    # ---------------------------------------------------------------- reading

    def read(self, max_rows: int, max_bytes: int = 16 * 1024 * 1024) -> SpoolBatch | None:
        """The oldest unshipped records of one segment (at most ``max_rows`` rows, at least one
        record), or None when nothing is waiting. Fully shipped segments are deleted on the way.
        """
        while True:
            seq, offset = self._acked
            existing = [s for s in _segments(self.directory) if s >= seq]
            if not existing:
                return None
            if existing[0] != seq:
                seq, offset = existing[0], 0
            writing = seq == self._seq
            path = self.directory / _segment_name(seq)
            with path.open("rb") as segment:
                size = os.fstat(segment.fileno()).st_size
                header = segment.readline()
                start = max(offset, len(header))
                segment.seek(start)
                chunk = segment.read(max_bytes)
            final = not writing and start + len(chunk) >= size
            batch = self._parse(seq, header, (offset, start), chunk, max_rows, final=final)
            if batch is not None:
                return batch
            if writing:
                return None
            # the whole segment is shipped (or it was only a header): on to the next one
            self._set_acked((seq + 1, 0), nbytes=max(len(header) - offset, 0))
            path.unlink(missing_ok=True)

    @staticmethod
    def _parse(
        seq: int,
        header: bytes,
        span: tuple[int, int],
        chunk: bytes,
        max_rows: int,
        *,
        final: bool,
    ) -> SpoolBatch | None:
        """Complete records of ``chunk`` (read from ``span[1]``; shipped up to ``span[0]``); in a
        ``final`` chunk (the end of a segment no longer written) an incomplete tail is torn."""
        offset, start = span
        payloads: list[bytes] = []
        times: list[int] = []
        rows = 0
        position = 0
        while rows < max_rows:
            newline = chunk.find(b"\n", position)
            if newline < 0:
                break
            prefix_end = chunk.index(b"\t", position, newline)
            count, time_us = chunk[position:prefix_end].split(b" ")
            payloads.append(chunk[prefix_end + 1 : newline])
            times.append(int(time_us))
            rows += int(count)
            position = newline + 1
        torn = len(chunk) - position if final and rows < max_rows else 0
        if not payloads and not torn:
            return None
        return SpoolBatch(
            header=header.split(b"\t", 1)[1].rstrip(b"\n") if b"\t" in header else b"",
            payloads=payloads,
            rows=rows,
            first_time_us=times[0] if times else 0,
            end=(seq, start + position + torn),
            nbytes=start + position + torn - offset,
            torn_bytes=torn,
        )

    def ack(self, batch: SpoolBatch) -> None:
        """Everything up to ``batch.end`` is shipped."""
        self._set_acked(batch.end, nbytes=batch.nbytes, rows=batch.rows)

    def _set_acked(self, position: tuple[int, int], *, nbytes: int, rows: int = 0) -> None:
        temporary = self.directory / f"{ACKED}.tmp"
        temporary.write_text(f"{position[0]} {position[1]}\n")
        temporary.replace(self.directory / ACKED)
        with self._lock:
            self._acked = position
            self.pending_bytes = max(self.pending_bytes - nbytes, 0)
            self.pending_rows = max(self.pending_rows - rows, 0)

    def _read_acked(self) -> tuple[int, int]:
        try:
            seq, offset = (self.directory / ACKED).read_text().split()
            return int(seq), int(offset)
        except (OSError, ValueError):
            return (0, 0)

    def _scan_pending(self) -> tuple[int, int]:
        """Bytes and rows not yet shipped, from the files (at start)."""
        seq, offset = self._acked
        nbytes = rows = 0
        for s in _segments(self.directory):
            if s < seq:
                continue
            data = (self.directory / _segment_name(s)).read_bytes()
            data = data[offset if s == seq else 0 :]
            nbytes += len(data)
            for line in data.split(b"\n"):
                prefix = line.split(b"\t", 1)[0].split(b" ")
                if len(prefix) == 2 and prefix[0].isdigit():
                    rows += int(prefix[0])
        return nbytes, rows

    def close(self) -> None:
        """Sync and close the segment; release the directory."""
        with self._lock:
            if self._fd is not None:
                os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = None
            os.close(self._lock_fd)
