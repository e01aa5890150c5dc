"""The README's configuration tables, generated from the settings' own fields and descriptions.

    .venv/bin/python scripts/settings_table.py           # print them
    .venv/bin/python scripts/settings_table.py --write   # replace them in README.md (make docs)

tests/test_docs.py fails when the README and the settings disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin_platform.settings import Settings  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"
SECTION = re.compile(r"^    # ([A-Z][^:]*)")
PARENTHESES = re.compile(r"\s*\([^)]*\)")
FIELD = re.compile(r"^    ([a-z_][a-z0-9_]*): ")


def sections() -> list[tuple[str, list[str]]]:
    """Fields in source order under the section comment above them (`# Data collection (...)`)."""
    source = (ROOT / "twin_platform/settings.py").read_text().splitlines()
    groups: list[tuple[str, list[str]]] = [("Servers and state", [])]
    for line in source:
        if (section := SECTION.match(line)) and "lives in the project" not in line:
            groups.append((PARENTHESES.sub("", section.group(1)).strip(" ."), []))
        elif (field := FIELD.match(line)) and field.group(1) in Settings.model_fields:
            groups[-1][1].append(field.group(1))
    return [(title, names) for title, names in groups if names]


def variable(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    choices = getattr(alias, "choices", None)
    return str(choices[0]) if choices else f"TWIN_{name.upper()}"


def default(name: str) -> str:
    value = Settings.model_fields[name].get_default(call_default_factory=True)
    if name == "home":
        return "`./.twin`"
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    return f"`{value}`"


def tables() -> str:
    lines: list[str] = []
    for title, names in sections():
        lines += [f"**{title}**", "", "| variable | default | meaning |", "|---|---|---|"]
        for name in names:
            description = (Settings.model_fields[name].description or "").replace("|", "\\|")
            lines.append(f"| `{variable(name)}` | {default(name)} | {description} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def with_tables(readme: str) -> str:
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[:start] + "\n" + tables() + readme[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="replace the tables in README.md")
    if parser.parse_args().write:
        README.write_text(with_tables(README.read_text()))
    else:
        print(tables())


if __name__ == "__main__":
    main()
