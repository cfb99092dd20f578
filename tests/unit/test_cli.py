"""The ``cd4ml`` command line as a whole: every command is listed and parses, the options and
exit codes agree across commands, errors are one line, and ``--help`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cd4ml import __version__
from cd4ml.cli import COMMANDS, main

#: commands without --json, and why: serve runs in the foreground until stopped; init writes
#: files and says which (its result is those files)
NO_JSON = {"serve", "init", "ui"}
HEAVY = ("pandas", "sklearn", "great_expectations", "docker", "github3", "sqlalchemy")


def _exit(argv: list[str]) -> int:
    """The exit code of ``cd4ml argv`` where argparse ends the process itself."""
    with pytest.raises(SystemExit) as ended:
        main(argv)
    return ended.value.code


def test_help_lists_every_command(capsys):
    assert _exit(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name} " in out or f"    {name}\n" in out, name
    assert "Exit codes: 0 ok, 1" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_parses_its_help(name, capsys):
    assert _exit([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cd4ml {name}")
    assert ("--json" in out) is (name not in NO_JSON), name


def test_version_unknown_command_and_no_command(capsys):
    assert _exit(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cd4ml {__version__}"
    assert _exit(["nosuchcommand"]) == 2
    assert "invalid choice: 'nosuchcommand'" in capsys.readouterr().err
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_help_of_every_command_imports_nothing_heavy():
    code = f"""
import json, sys
from cd4ml.cli import COMMANDS, main
for argv in [["--help"], *[[name, "--help"] for name in COMMANDS]]:
    try:
        main(argv)
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("argv", [["runs", "--limit", "0"], ["models", "--limit", "x"],
                                  ["history", "--limit", "-1"]])
def test_a_limit_must_be_a_whole_number_of_at_least_one(argv, capsys):
    assert _exit(argv) == 2
    assert "argument --limit: expected" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "gate"])
def test_override_options_mean_the_same_in_run_and_gate(command, capsys):
    assert main([command, "--reason", "because"]) == 2
    assert capsys.readouterr().err == "cd4ml: error: --reason and --by only go with --override\n"
    assert main([command, "--override", "--reason", "  "]) == 2
    assert "--override needs --reason TEXT" in capsys.readouterr().err


def test_a_path_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, pipelines_dir, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ["init", "--data", str(pipelines_dir / "data" / "wine.csv"), "--target", "target",
            "--dir", str(blocker)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cd4ml: error: {blocker}") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert main(["--debug", *argv]) == 2  # --debug adds the traceback, same exit code
    assert "NotADirectoryError" in capsys.readouterr().err


def test_render_with_nothing_to_render_is_a_usage_error(tmp_path, pipelines_dir, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    argv = ["render", "--env", "staging", "-p", str(pipelines_dir / "wine.yaml"), "--store", url]
    assert main(argv) == 2
    assert capsys.readouterr().err == ("cd4ml: error: wine has no blessed version to render; name "
                                       "one, or pass --image REF to render the infrastructure for "
                                       "an image\n")
    # before the first model, an image alone shows the infrastructure it would run in
    assert main([*argv, "--image", "registry.example/team/wine:candidate"]) == 0
    out = capsys.readouterr().out
    assert 'image: "registry.example/team/wine:candidate"' in out and "wine:unknown" in out
