"""Command lines that would forge records or start a server wrong get one usage line (exit 2);
--debug shows a traceback but never changes the exit code."""

from __future__ import annotations

import pytest

from cd4ml.cli import main


@pytest.mark.parametrize("argv", [
    ["serve", "wine:1", "--workers", "0"],
    ["serve", "wine:1", "--workers", "-3"],
    ["serve", "wine:1", "--port", "70000"],
    ["serve", "wine:1", "--port", "http"],
    ["promote", "1", "--to", "production", "--approved-by", "rita\nApproved-by: boss"],
    ["promote", "1", "--to", "production", "--approved-by", "\x1b[2Jrita"],
    ["promote", "1", "--to", "production", "--approved-by", "   "],
    ["deploy", "1", "--env", "staging", "--actor", "bob\r"],
    ["deploy", "1", "--env", "staging", "--reason", "ok\x00"],
    ["gate", "--override", "--reason", "fine", "--by", "eve\u202egnirts"],
], ids=lambda a: " ".join(a).encode("unicode_escape").decode()[:60])
def test_bad_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("usage:") is False


def test_debug_keeps_the_exit_code(tmp_path, capsys):
    missing = str(tmp_path / "nope.yaml")
    plain = main(["validate", "-p", missing])
    debug = main(["--debug", "validate", "-p", missing])
    err = capsys.readouterr().err
    assert plain == debug == 2
    assert "Traceback" in err
