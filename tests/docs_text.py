"""The user documentation as the tests read it: README.md, BENCHMARKS.md and every docs/*.md.

Text moved out of the README into docs/ stays under the tests that checked it in the README:
they read :func:`docs_text` (everything) or :func:`section` (from a heading to the next one of
its level or higher, in whichever file holds it).
"""

import glob
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def doc_files():
    """README.md, BENCHMARKS.md (when present) and docs/*.md, as absolute paths."""
    files = [os.path.join(REPO, "README.md")]
    if os.path.exists(os.path.join(REPO, "BENCHMARKS.md")):
        files.append(os.path.join(REPO, "BENCHMARKS.md"))
    return files + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def docs_text():
    """All documentation files concatenated (each starts on a new line)."""
    return "\n".join(read(p) for p in doc_files())


def section(heading):
    """The text from the line that starts with ``heading`` (e.g. ``"## Anchor fit of"``, any
    level: the leading ``#`` are ignored) to the next heading of the same level or higher, in
    the one documentation file that has it."""
    title = heading.lstrip("#").strip()
    found = []
    for path in doc_files():
        text = read(path)
        for m in re.finditer(r"^(#+) " + re.escape(title), text, re.M):
            level = len(m.group(1))
            end = re.compile(r"^#{1,%d} " % level, re.M)
            rest = strip_fences(text[m.end():])  # a '# comment' in a code block is no heading
            stop = end.search(rest)
            found.append(text[m.start():m.end() + (stop.start() if stop else len(rest))])
    if len(found) != 1:
        raise AssertionError("heading {!r} found {} times in the docs".format(title, len(found)))
    return found[0]


def strip_fences(text):
    """``text`` with the lines of fenced code blocks blanked (same length, same offsets)."""
    out, fence = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fence = not fence
            out.append(" " * len(line))
        else:
            out.append(" " * len(line) if fence else line)
    return "\n".join(out)
