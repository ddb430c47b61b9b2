"""One validator per kind of input field, shared by every input path (YAML, ini, CLI, markers).

Each validator takes the raw value and a ``Where`` naming its origin, and returns the normalized
value or raises ``ConfigError`` with a one-line message such as
``testservers.yaml: servers.web.ports[1]: 70000 is not a port (1-65535)``.
"""

from __future__ import annotations

import errno
import math
import re
import reprlib
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, NoReturn

from .errors import ConfigError

MAX_DURATION = 24 * 3600.0
MAX_COPY_BYTES = 256 << 20  # a test server's files; more is a mistake (a data dir, a venv)
MAX_COUNT = 1_000_000

# Docker's reference grammar (github.com/distribution/reference, regexp.go).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?", re.ASCII
)

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_STAGE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# name[:arch][=version], as apt-get install takes it
_APT_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?(?:=[A-Za-z0-9.+:~-]+)?")
_PLAIN_KEY = re.compile(r"[\w.-]+", re.ASCII)
_CONTAINER_PATH = re.compile(r"/[A-Za-z0-9._/@+=:,-]*")
_MODE = re.compile(r"(?:0o?)?([0-7]{3,4})")
_PORT = re.compile(r"([0-9]{1,5})(?:/(tcp|udp))?")


@dataclass(frozen=True)
class Where:
    """Where a value came from: a source (file, option, marker) and a key path inside it."""

    source: str
    path: str = ""

    def key(self, name: object) -> Where:
        # A key with odd characters (a newline, a space) is shown quoted: one line, unambiguous.
        text = name if isinstance(name, str) and _PLAIN_KEY.fullmatch(name) else ascii(name)
        return Where(self.source, f"{self.path}.{text}" if self.path else text)

    def index(self, i: int) -> Where:
        return Where(self.source, f"{self.path}[{i}]")

    def fail(self, message: str) -> NoReturn:
        prefix = f"{self.source}: {self.path}" if self.path else self.source
        raise ConfigError(f"{prefix}: {message}")


def show(value: object, limit: int = 60) -> str:
    """A short, single-line, ASCII rendering of a bad value for an error message.

    Bounded however large or deep the value (a YAML alias bomb), and with look-alike characters
    escaped, so that a Cyrillic letter cannot pass for its Latin twin in the message.
    """
    shower = reprlib.Repr()
    shower.maxlevel, shower.maxdict, shower.maxlist, shower.maxtuple = 2, 4, 4, 4
    shower.maxstring, shower.maxother, shower.maxlong = limit, limit, 40
    try:
        text = shower.repr(value)
    except ValueError:  # an int too long to print
        text = "<a number too long to show>"
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(word: str, choices: list[str]) -> str:
    close = get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def mapping(value: object, where: Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        where.fail(f"must be a mapping, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            where.fail(f"keys must be strings, not {show(key)}")
    return value


def known_keys(value: dict[str, Any], allowed: tuple[str, ...], where: Where) -> None:
    for key in value:
        if key not in allowed:
            where.key(key).fail(
                f"unknown key{did_you_mean(key, list(allowed))}; known keys: {', '.join(allowed)}"
            )


def string(value: object, where: Where, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        where.fail(f"must be a string, not {type(value).__name__} {show(value)}")
    if "\x00" in value:
        where.fail("must not contain a NUL character")
    if not value and not allow_empty:
        where.fail("must not be empty")
    return value


def single_line(value: object, where: Where) -> str:
    text = string(value, where)
    if any(c in text for c in "\r\n"):
        where.fail(f"must be a single line: {show(text)}")
    return text


def string_list(value: object, where: Where) -> tuple[object, ...]:
    if not isinstance(value, list):
        where.fail(f"must be a list, not {type(value).__name__} {show(value)}")
    return tuple(value)


def argv(value: object, where: Where) -> tuple[str, ...]:
    """A command as an argument list: it is never given to a shell."""
    if isinstance(value, str):
        where.fail(
            f'must be a list of arguments such as ["httpd", "-f"], not the string {show(value)}'
            " (no shell is involved)"
        )
    items = string_list(value, where)
    if not items:
        where.fail("must not be empty")
    return tuple(string(item, where.index(i), allow_empty=True) for i, item in enumerate(items))


def server_name(value: object, where: Where) -> str:
    name = string(value, where)
    if not _LABEL.fullmatch(name):
        where.fail(
            f"{show(name)} is not a valid server name "
            "(letters, digits and inner hyphens, at most 63 characters)"
        )
    return name


def image_ref(value: object, where: Where) -> str:
    ref = single_line(value, where)
    match = _REFERENCE.fullmatch(ref)
    if not match or len(match.group("name")) > 255:
        where.fail(f"{show(ref)} is not a valid image reference (such as busybox:stable)")
    return ref


def hostname(value: object, where: Where) -> str:
    name = string(value, where)
    if not _LABEL.fullmatch(name):
        where.fail(f"{show(name)} is not a valid host name (RFC 1123 label)")
    return name


def domain(value: object, where: Where) -> str:
    name = string(value, where)
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        where.fail(f"{show(name)} is not a valid domain name (RFC 1123)")
    return name


def build_stage(value: object, where: Where) -> str:
    name = string(value, where)
    if not _STAGE.fullmatch(name):
        where.fail(f"{show(name)} is not a build stage name (letters, digits, _ . -)")
    return name


def env_key(value: object, where: Where) -> str:
    key = string(value, where)
    if not _ENV_KEY.fullmatch(key):
        where.fail(f"{show(key)} is not a valid variable name (letters, digits, underscore)")
    return key


def env_value(value: object, where: Where) -> str:
    # The value may be a secret: messages name its type, never the value.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) < 10**18:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float)):  # not finite, or too large to mean anything
        where.fail("must be a finite number of sensible size")
    if not isinstance(value, str):
        kinds = {type(None): "null", list: "a list", dict: "a mapping"}
        kind = kinds.get(type(value), f"a {type(value).__name__}")
        where.fail(f"must be a string, a number or a boolean, not {kind}")
    if "\x00" in value:
        where.fail("must not contain a NUL character")
    return value


def port(value: object, where: Where) -> tuple[int, str]:
    """``8080`` or ``"53/udp"`` -> ``(number, protocol)``."""
    if isinstance(value, bool):
        where.fail(f"{show(value)} is not a port (1-65535)")
    if isinstance(value, int):
        number, protocol = value, "tcp"
    elif isinstance(value, str) and (match := _PORT.fullmatch(value)):
        number, protocol = int(match.group(1)), match.group(2) or "tcp"
    else:
        where.fail(f"{show(value)} is not a port (a number 1-65535, optionally /tcp or /udp)")
    if not 1 <= number <= 65535:
        where.fail(f"{show(number)} is not a port (1-65535)")
    return number, protocol


def tcp_port(value: object, where: Where) -> int:
    number, protocol = port(value, where)
    if protocol != "tcp":
        where.fail(f"{show(value)}: only TCP ports can be checked")
    return number


def url_path(value: object, where: Where) -> str:
    path = single_line(value, where)
    if (
        not path.startswith("/")
        or not path.isascii()
        or any(c.isspace() or not c.isprintable() for c in path)
    ):
        where.fail(f"{show(path)} is not a URL path (it starts with /, is ASCII, has no spaces)")
    return path


def regex(value: object, where: Where) -> str:
    pattern = string(value, where)
    try:
        re.compile(pattern)
    except re.error as exc:
        reason = " ".join(exc.msg.split()).encode("ascii", "backslashreplace").decode("ascii")
        where.fail(f"{show(pattern)} is not a regular expression: {reason} at position {exc.pos}")
    return pattern


def boolean(value: object, where: Where) -> bool:
    if not isinstance(value, bool):
        where.fail(f"must be true or false, not {show(value)}")
    return value


def mode(value: object, where: Where) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        where.fail(f'{show(value)} is ambiguous as a mode: quote it in octal, such as "0755"')
    text = string(value, where)
    match = _MODE.fullmatch(text)
    if not match:
        where.fail(f'{show(text)} is not an octal file mode (such as "0644" or "0755")')
    return int(match.group(1), 8)


def duration(value: object, where: Where, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        where.fail(f"must be a number of seconds, not {show(value)}")
    if isinstance(value, int) and value > MAX_DURATION:
        where.fail(f"{show(value)} seconds is more than a day")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        where.fail(f"{show(value)} is not a positive number of seconds")
    if seconds > MAX_DURATION:
        where.fail(f"{show(value)} seconds is more than a day")
    return seconds


def count(value: object, where: Where) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        where.fail(f"must be a whole number, not {show(value)}")
    if not 1 <= value <= MAX_COUNT:
        where.fail(f"{show(value)} is out of range (1-{MAX_COUNT})")
    return value


def apt_package(value: object, where: Where) -> str:
    name = string(value, where)
    if not _APT_PACKAGE.fullmatch(name):
        where.fail(f"{show(name)} is not a Debian package name")
    return name


def container_path(value: object, where: Where) -> str:
    path = string(value, where)
    if not _CONTAINER_PATH.fullmatch(path):
        where.fail(
            f"{show(path)} is not an absolute path of plain characters "
            "(letters, digits, and . _ / @ + = : , -)"
        )
    if ".." in path.split("/"):
        where.fail(f"{show(path)} must not contain '..'")
    return path


def relative_path(value: object, where: Where, base: Path) -> Path:
    """A path inside ``base`` (after resolving symlinks): nothing outside it can be read."""
    text = string(value, where)
    if Path(text).is_absolute():
        where.fail(f"{show(text)} must be relative to {base}")
    try:
        resolved = (base / text).resolve()
        inside = resolved.is_relative_to(base.resolve())
        # Strict, for what a lenient resolve hides: Python 3.13 no longer raises on a loop.
        (base / text).resolve(strict=True)
        exists = True
    except FileNotFoundError:
        exists = False
    except (OSError, RuntimeError, UnicodeError, ValueError) as exc:  # loops, long names
        where.fail(f"{show(text)} cannot be resolved ({unresolvable(exc)})")
    if not inside:
        where.fail(f"{show(text)} leads outside {base}")
    if not exists:
        where.fail(f"{show(text)} does not exist in {base}")
    return resolved


def unresolvable(exc: Exception) -> str:
    """Why a path cannot be resolved, the same words on every Python version."""
    if isinstance(exc, RuntimeError) or (isinstance(exc, OSError) and exc.errno == errno.ELOOP):
        return "a symlink loop"  # RuntimeError up to 3.12, OSError(ELOOP) from 3.13
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def copy_size(path: Path, where: Where) -> int:
    """The bytes a copy source puts into the build context, capped."""
    if path.is_file():
        total = path.stat().st_size
    else:
        total = sum(
            p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()
        )
    if total > MAX_COPY_BYTES:
        where.fail(
            f"{total >> 20} MiB is more than {MAX_COPY_BYTES >> 20} MiB to copy into an image"
        )
    return total


def choice(value: object, where: Where, choices: tuple[str, ...]) -> str:
    text = string(value, where)
    if text not in choices:
        where.fail(
            f"{show(text)} is not one of {', '.join(choices)}{did_you_mean(text, list(choices))}"
        )
    return text


def read_bytes(path: Path, shown: str) -> bytes:
    """A config file's bytes; a file that cannot be read is one line naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror or exc}") from None
