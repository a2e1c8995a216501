"""The README stays honest: every setting is documented and exactly two set-up commands are shown."""

from __future__ import annotations

import re

from streamfit.settings import PROJECT_ROOT, Settings

README = (PROJECT_ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`(STREAMFIT_[A-Z0-9_]+)`", README))
    expected = {f"STREAMFIT_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from README"
    assert documented - expected == set(), "README documents settings that do not exist"


def test_the_two_commands() -> None:
    block = README.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
