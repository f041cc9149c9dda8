"""What reaches a terminal. File and folder names come from shared folders (SECURITY.md):
a name holding an escape sequence can redraw the screen, a newline can forge a line, and a
byte that is not UTF-8 cannot be printed at all. So every name shown goes through `shown`,
and every command suggested for pasting through `command`. Imports nothing heavy.
"""
from __future__ import annotations

import os
import shlex
import unicodedata

NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# Control and format characters (escape sequences, bidi overrides), lines and paragraphs,
# and surrogates (the bytes of a name that is not UTF-8, as Python decodes file names).
HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def unprintable(char: str) -> bool:
    return unicodedata.category(char) in HIDDEN


def escaped(char: str) -> str:
    """`\\n`, `\\x1b`, `\\u202e`; a byte of a non-UTF-8 name as that byte (`\\xff`)."""
    code = ord(char)
    if char in NAMED:
        return NAMED[char]
    if 0xdc80 <= code <= 0xdcff:  # os.fsdecode's stand-in for the byte code - 0xdc00
        code -= 0xdc00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code <= 0xffff else f"\\U{code:08x}"


def shown(text) -> str:
    """TEXT (a str, path or bytes) as one printable line: every control or format character
    and every byte that is not UTF-8 is written as a visible escape (`\\x1b`, `\\n`, `\\xff`)."""
    text = os.fsdecode(text) if isinstance(text, (bytes, os.PathLike)) else str(text)
    return "".join(escaped(c) if unprintable(c) else c for c in text)


def shell_word(word) -> str:
    """One shell word that is printable and means exactly WORD: `shlex.quote`, or ANSI-C
    quoting (`$'a\\x1bb'`: bash, zsh, ksh, POSIX.1-2024) when WORD holds unprintable characters."""
    word = os.fsdecode(word) if isinstance(word, (bytes, os.PathLike)) else str(word)
    if not any(unprintable(c) for c in word):
        return shlex.quote(word)
    body = "".join("\\" + c if c in "'\\" else "".join(f"\\x{b:02x}" for b in os.fsencode(c)) if unprintable(c)
                   else c for c in word)
    return f"$'{body}'"


def command(*words) -> str:
    """A command line to suggest: what the screen shows is exactly what the shell runs."""
    return " ".join(shell_word(w) for w in words)
