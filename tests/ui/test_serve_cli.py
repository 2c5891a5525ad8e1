"""`desra serve` argument handling (no server needed)."""

from __future__ import annotations

import pytest

from desra.cli import main
from desra.cli.cmd_serve import parse_auth
from desra.core.errors import ConfigError


def test_auth_is_split_at_the_first_colon():
    assert parse_auth("alice:s3:cret") == ("alice", "s3:cret")
    assert parse_auth(None) is None


@pytest.mark.parametrize("text", ["alice", ":pw", "alice:", ""])
def test_malformed_auth_is_a_config_error(text):
    with pytest.raises(ConfigError, match="USER:PASS"):
        parse_auth(text)


def test_bad_port_is_reported_in_one_line(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port got 70000" in capsys.readouterr().err


def test_serve_binds_loopback_by_default(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "default 127.0.0.1" in capsys.readouterr().out
