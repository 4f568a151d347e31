"""The README's Python blocks and command lines run as written."""
import re
import shlex
from pathlib import Path

import pytest

from snnedge.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
# The "Command line" section: a Python block that writes the files, then the commands.
CLI_SECTION = re.search(r"## Command line\n.*?```python\n(.*?)```.*?```bash\n(.*?)```", TEXT,
                        flags=re.S)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, capsys, tmp_path, monkeypatch):
    if CLI_SECTION and BLOCKS[index] == CLI_SECTION.group(1):
        pytest.skip("run with its commands by test_readme_command_line_runs_as_written")
    monkeypatch.chdir(tmp_path)  # blocks may write files
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out  # every block prints what it shows


def test_readme_command_line_runs_as_written(capsys, tmp_path, monkeypatch):
    assert CLI_SECTION, "README.md has no '## Command line' section with python and bash blocks"
    monkeypatch.chdir(tmp_path)
    exec(compile(CLI_SECTION.group(1), "README.md command-line block", "exec"),
         {"__name__": "__readme__"})
    commands = [line for line in CLI_SECTION.group(2).splitlines() if line.strip()]
    assert [shlex.split(c)[:2] for c in commands] == [
        ["snnedge", "convert"], ["snnedge", "simulate"], ["snnedge", "report"]]
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, command
    out = capsys.readouterr().out
    assert "accuracy:" in out and "| truenorth | SNN |" in out
    assert {"snn.pt", "results.json", "report"} <= {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "report" / "report.md").is_file()
