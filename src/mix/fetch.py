"""Downloads: file:// and http(s)://, with retries, per-attempt timeouts and a bounded total.

Only stdlib (urllib): mix runs inside MixOS with a trimmed Python. A server that stalls,
trickles or answers 5xx is retried with back-off; 404 and other 4xx fail at once. The
total time of one fetch never exceeds deadline seconds.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import IO

from mix.errors import DiskFullError, FetchError, TrustError, is_disk_full
from mix.progress import Progress

CHUNK = 1 << 16


class _Permanent(Exception):
    pass


class _TooLarge(_Permanent):
    pass


class NotServedError(FetchError):
    """The server answered, and has no such file (HTTP 4xx, or no such file:// path)."""


class Fetcher:
    def __init__(self, timeout: float = 30.0, retries: int = 3, progress: bool | None = None) -> None:
        self.timeout = timeout
        self.retries = retries
        # back-off pauses grow to at most one timeout; the whole fetch is bounded by:
        self.deadline_s = timeout * (retries + 1) + sum(self._pause(a) for a in range(1, retries + 1))
        self.progress = sys.stderr.isatty() if progress is None else progress
        # The overall progress of a batch of downloads, when the caller draws one.
        self.overall: Progress | None = None

    def _pause(self, attempt: int) -> float:
        return min(1.0 * attempt, self.timeout)

    def _open(self, url: str, timeout: float, offset: int = 0
              ) -> tuple[IO[bytes], int | None, int]:
        """(body, its length if known, the offset it starts at): offset when the server
        honours the range asked for, else 0 (the whole body)."""
        if url.startswith("file://"):
            path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
            try:
                fh = open(path, "rb")  # noqa: SIM115 (caller closes)
            except FileNotFoundError:
                raise _Permanent(f"{path} does not exist") from None
            except OSError as e:
                raise _Permanent(f"{path}: {e.strerror}") from None
            size = os.fstat(fh.fileno()).st_size
            start = offset if offset <= size else 0
            fh.seek(start)
            return fh, size - start, start
        from urllib import error as urlerror
        from urllib import request as urlrequest

        headers = {"User-Agent": "mix/0.1"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        req = urlrequest.Request(url, headers=headers)
        try:
            resp = urlrequest.urlopen(req, timeout=timeout)
        except urlerror.HTTPError as e:
            if e.code == 416 and offset:  # the partial file is not a prefix: start again
                return self._open(url, timeout, 0)
            if 400 <= e.code < 500 and e.code not in (408, 429):
                raise _Permanent(f"HTTP {e.code} {e.reason}") from None
            raise OSError(f"HTTP {e.code} {e.reason}") from None
        except urlerror.URLError as e:
            raise OSError(str(e.reason)) from None
        start = 0
        if offset and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if content_range.startswith(f"bytes {offset}-"):
                start = offset
        length = resp.headers.get("Content-Length")
        return resp, int(length) if length and length.isdigit() else None, start

    def _attempt(self, url: str, out: IO[bytes], deadline: float, label: str,
                 max_size: int | None, resume: bool = False) -> None:
        """One download of url into out; with resume, what out already holds is kept
        and only the rest asked for (an HTTP range), if the server allows."""
        offset = out.seek(0, os.SEEK_END) if resume else 0
        if max_size is not None and offset > max_size:
            offset = 0
        fh, total, start = self._open(
            url, min(self.timeout, max(0.1, deadline - time.monotonic())), offset)
        out.seek(start)
        out.truncate()
        done = start
        total = None if total is None else start + total
        last_draw = 0.0
        counted = start  # (what the overall line already counts: retries add nothing)
        if self.overall is not None and start:
            self.overall.advance(start)
        # read1: return what one socket read brings, so that a trickling server cannot keep
        # a read (and the deadline check) waiting for a full chunk.
        read = getattr(fh, "read1", fh.read)
        try:
            while True:
                if time.monotonic() > deadline:
                    raise OSError("download took too long")
                chunk = read(CHUNK)
                if not chunk:
                    break
                done += len(chunk)
                if max_size is not None and done > max_size:
                    raise _TooLarge(f"larger than the expected {max_size} bytes")
                out.write(chunk)
                if self.overall is not None:
                    if done > counted:
                        self.overall.advance(done - counted)
                        counted = done
                elif self.progress and time.monotonic() - last_draw > 0.1:
                    last_draw = time.monotonic()
                    pct = f"{100 * done // total:3d}%" if total else f"{done >> 10} KiB"
                    sys.stderr.write(f"\r  {label} {pct}")
                    sys.stderr.flush()
        finally:
            fh.close()
            if self.progress and last_draw:
                sys.stderr.write("\r\033[K")
        if total is not None and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")

    def fetch(self, url: str, out: IO[bytes], label: str = "", max_size: int | None = None,
              signed_size: bool = False, resume: bool = False) -> None:
        """Write the body of url to out (truncated and rewritten on each retry; with
        resume, continued from what out holds where the server allows ranges).
        signed_size: max_size is the size a signed index gives, so more is a trust
        failure, not a download one."""
        deadline = time.monotonic() + self.deadline_s
        errors: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                pause = min(self._pause(attempt), deadline - time.monotonic())
                if pause <= 0:
                    break
                time.sleep(pause)
            if not resume:
                out.seek(0)
                out.truncate()
            try:
                self._attempt(url, out, deadline, label or url.rsplit("/", 1)[-1], max_size,
                              resume)
                return
            except _TooLarge as e:
                if signed_size:
                    raise TrustError(f"{url} is {e}, the size the signed index gives",
                                     "the mirror serves a corrupt or altered file; run "
                                     "'mix update' or try another mirror") from None
                raise FetchError(f"cannot download {url}: {e}",
                                 "check the repository URL and run 'mix update'") from None
            except _Permanent as e:
                raise NotServedError(f"cannot download {url}: {e}",
                                     "check the repository URL and run 'mix update'") from None
            except (OSError, TimeoutError, ValueError) as e:
                if is_disk_full(e):  # writing what was received, not the network: no retry
                    raise DiskFullError(f"disk full: cannot store {url} ({e})",
                                        "free some space there, then run mix again") from None
                errors.append(str(e) or type(e).__name__)
            if time.monotonic() >= deadline:
                break
        raise FetchError(f"cannot download {url} after {len(errors)} attempts: {errors[-1]}",
                         "the server is unreachable or failing; try again later or use "
                         "another mirror")

    def fetch_bytes(self, url: str, max_size: int = 512 << 20) -> bytes:
        import io

        buf = io.BytesIO()
        self.fetch(url, buf, max_size=max_size)
        return buf.getvalue()

    def fetch_file(self, url: str, dest: Path, sha256: str, size: int | None = None) -> Path:
        """Download to dest (atomically) and check its sha256; return dest.

        The download goes to .NAME.part beside dest. If it is interrupted (mix killed,
        the network gone), the next download of that file continues from there where
        the server honours HTTP ranges; a part that turns out not to be the signed
        file is deleted. Only one mix changes a root at a time (the lock), so one name
        per file is enough."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(dest)
        for stale in dest.parent.glob(f".{glob.escape(dest.name)}.part[0-9]*"):
            stale.unlink(missing_ok=True)  # left by a mix that named parts by its pid
        keep = False
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with os.fdopen(fd, "r+b") as f:
                resumed = os.fstat(f.fileno()).st_size > 0
                for resume in (True, False) if resumed else (False,):
                    try:
                        if not resume or size is None or os.fstat(f.fileno()).st_size != size:
                            self.fetch(url, f, label=dest.name, max_size=size,
                                       signed_size=size is not None, resume=resume)
                    except (FetchError, KeyboardInterrupt):
                        keep = f.tell() > 0  # a network failure or Ctrl-C: resume next time
                        raise
                    f.flush()
                    f.seek(0)
                    h = hashlib.sha256()
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                    if h.hexdigest() == sha256:
                        break  # else a resumed part was not the start of this file: again
            if h.hexdigest() != sha256:
                raise TrustError(f"{url}: sha256 {h.hexdigest()} does not match the signed "
                                 f"index ({sha256})", "the mirror serves a corrupt or altered "
                                 "file; run 'mix update' or try another mirror")
            os.replace(tmp, dest)
        finally:
            if not keep:
                tmp.unlink(missing_ok=True)
        return dest


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")
