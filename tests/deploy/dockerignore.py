"""Docker's .dockerignore rules (the last matching pattern wins; `!` re-includes; a pattern that
matches a directory matches everything in it), to check what a build context would hold."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

__all__ = ["DockerIgnore"]


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


class DockerIgnore:
    def __init__(self, path: Path) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = str(PurePosixPath(line.removeprefix("!").strip().lstrip("/")))
            self.rules.append((negated, _regex(pattern)))

    def excluded(self, relative: str) -> bool:
        """Whether `relative` (a path inside the context, with /) stays out of the build context."""
        parts = PurePosixPath(relative).parts
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negated, regex in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = not negated
        return result
