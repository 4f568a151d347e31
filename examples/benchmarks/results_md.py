"""Writing one benchmark's section of ``RESULTS.md`` without touching the others."""
from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, heading: str, section: str) -> None:
    """Replace the section of ``path`` that starts at ``heading`` (up to the next ``## ``
    heading) with ``section`` (which starts with ``heading``), or append it."""
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    if heading in text:
        before, rest = text.split(heading, 1)
        after = rest.split("\n## ", 1)
        text = before + section.rstrip() + "\n\n" + ("## " + after[1] if len(after) == 2 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n")
