"""The README stays short and honest: exactly two set-up commands, links that resolve, and the
inner loop named beside them."""

from __future__ import annotations

import re

from streamfit.settings import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_the_two_commands() -> None:
    block = README.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_readme_is_short_and_names_the_inner_loop() -> None:
    assert len(README.splitlines()) <= 250
    assert "make check" in README


def test_every_link_into_the_repository_resolves() -> None:
    links = re.findall(r"\]\(((?:docs|bench|tests|streamfit|app|dags)[^)#\s]*)", README)
    assert links, "the README links into docs/"
    missing = [link for link in links if not (PROJECT_ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
