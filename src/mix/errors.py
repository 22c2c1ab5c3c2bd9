"""Errors mix reports to people, each with the exit status it maps to.

Every failure a user can cause or fix is a MixError: the message says what failed
and with which input, the hint says what to do. cli.main() prints both and exits
with the error's code (documented in docs/mix.md).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1          # unexpected failure (a bug, or an OS error mix did not foresee)
EXIT_USAGE = 2          # bad command line
EXIT_RESOLVE = 3        # dependencies cannot be satisfied / package unknown
EXIT_TRUST = 4          # signature, key, expiry, rollback or checksum refused
EXIT_LOCKED = 5         # another mix process holds the lock on this root
EXIT_FETCH = 6          # download failed (after retries)
EXIT_TRANSACTION = 7    # the transaction failed and was rolled back (conflict, I/O, disk full, script)
EXIT_BAD_PACKAGE = 8    # a package file or staging directory is malformed
EXIT_NOT_FOUND = 9      # asked about a package or path that is not there
EXIT_DECLINED = 10      # the user answered no, or a prompt was needed without a tty
EXIT_VERIFY = 11        # `mix verify` found files that differ from the database

# For `mix --help` and `mix help exit-codes` (docs/mix.md has the long form).
EXIT_CODES = (
    (0, "success"),
    (1, "unexpected error (a bug, or an OS error mix did not foresee)"),
    (2, "bad command line or configuration (no repositories, state outside --root)"),
    (3, "cannot be resolved: unknown package, missing dependency, conflict, held"),
    (4, "trust refused: signature, key, expiry, rollback, checksum, size"),
    (5, "another mix is changing this root (--wait waits for it)"),
    (6, "download failed after retries"),
    (7, "transaction failed and rolled back (conflict, disk full, script)"),
    (8, "a package file or staging directory is malformed; not a MixOS image (viso)"),
    (9, "not found: package, version to reinstall, path, search result, image file"),
    (10, "declined, or confirmation needed without a terminal (-y)"),
    (11, "mix verify found files that differ from the database"),
    (130, "interrupted (SIGINT); an unfinished transaction rolled back"),
    (143, "terminated (SIGTERM); as for SIGINT"),
)


def exit_codes_text() -> str:
    return "exit status:\n" + "\n".join(f"  {code:3}  {text}" for code, text in EXIT_CODES)


class MixError(Exception):
    """An error for people: what failed (message) and what to do (hint)."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(MixError):
    exit_code = EXIT_USAGE


class ResolveError(MixError):
    exit_code = EXIT_RESOLVE


class TrustError(MixError):
    exit_code = EXIT_TRUST


class LockedError(MixError):
    exit_code = EXIT_LOCKED


class FetchError(MixError):
    exit_code = EXIT_FETCH


class TransactionError(MixError):
    exit_code = EXIT_TRANSACTION


class DiskFullError(MixError):
    """No space (or no inodes) left on a filesystem mix writes to; nothing was changed."""

    exit_code = EXIT_TRANSACTION


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC or EDQUOT from the OS, or SQLite's "database or disk is full"."""
    import errno

    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    import sqlite3

    return isinstance(e, sqlite3.Error) and (
        getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or "database or disk is full" in str(e))


class PackageError(MixError):
    exit_code = EXIT_BAD_PACKAGE


class NotFoundError(MixError):
    exit_code = EXIT_NOT_FOUND


class DeclinedError(MixError):
    exit_code = EXIT_DECLINED


class VerifyError(MixError):
    exit_code = EXIT_VERIFY
