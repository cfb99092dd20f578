"""The front's nginx configuration as cd4ml renders it (tests/integration/test_front.py runs it)."""

from __future__ import annotations

import re

import pytest

from cd4ml.errors import DeployError
from cd4ml.release.targets.front import (
    MAX_BODY,
    OWN_LABEL,
    Routes,
    check_split,
    nginx_conf,
    own_image,
    parse_routes,
)


def test_blue_green_routes_all_requests_to_one_colour():
    conf = nginx_conf(Routes(stable="x-blue:8080", generation=7))
    assert parse_routes(conf) == Routes(stable="x-blue:8080", generation=7)
    (upstream,) = re.findall(r"upstream cd4ml_live \{(.*?)\}", conf, re.DOTALL)
    assert re.findall(r"server (\S+) weight=(\d+)", upstream) == [("x-blue:8080", "1")]
    assert "mirror" not in conf and "resolver" not in conf
    # the server's limit, refused at the front; retries only of what was never sent
    assert f"client_max_body_size {MAX_BODY};" in conf
    assert re.findall(r"^\s*proxy_next_upstream ([^;]*);", conf, re.MULTILINE) == ["error timeout"]
    assert re.search(r"keepalive_timeout [1-4]s;", upstream)


def test_a_weighted_split_and_a_shadow():
    conf = nginx_conf(Routes(stable="x-blue:8080", candidate="x-green:8080", weight=10))
    (upstream,) = re.findall(r"upstream cd4ml_live \{(.*?)\}", conf, re.DOTALL)
    assert re.findall(r"server (\S+) weight=(\d+)", upstream) == [("x-blue:8080", "90"),
                                                                 ("x-green:8080", "10")]
    shadow = nginx_conf(Routes(stable="x-blue:8080", candidate="x-green:8080", shadow=True))
    (upstream,) = re.findall(r"upstream cd4ml_live \{(.*?)\}", shadow, re.DOTALL)
    assert re.findall(r"server (\S+) weight", upstream) == ["x-blue:8080"]
    assert "mirror /.cd4ml/mirror;" in shadow and "mirror_request_body on;" in shadow
    # the mirror location cannot be asked for from outside
    assert re.search(r"location = /.cd4ml/mirror \{\s+internal;", shadow)
    whole = nginx_conf(Routes(stable="x-blue:8080", candidate="x-green:8080", weight=100))
    (upstream,) = re.findall(r"upstream cd4ml_live \{(.*?)\}", whole, re.DOTALL)
    assert re.findall(r"server (\S+) weight", upstream) == ["x-green:8080"]


def test_swarm_resolves_services_and_splits_by_request_id():
    conf = nginx_conf(Routes(stable="model:8080", candidate="s_candidate:8080", weight=25),
                      resolver="127.0.0.11")
    assert "resolver 127.0.0.11 valid=1s" in conf and "upstream cd4ml_live" not in conf
    assert re.search(r'split_clients "\$\{cd4ml_request_id\}" \$cd4ml_pool \{\s+25% s_candidate;'
                     r"\s+\*\s+model;", conf)
    plain = nginx_conf(Routes(stable="model:8080"), resolver="127.0.0.11")
    assert "set $cd4ml_live model;" in plain and "split_clients" not in plain


def test_split_arguments_are_checked():
    for weight, shadow in ((-1, False), (101, False), (10, True)):
        with pytest.raises(DeployError):
            check_split(weight, shadow)
    check_split(0, True)
    check_split(100, False)


def test_the_front_image_is_named_by_its_dockerfile_and_labelled():
    ref, dockerfile = own_image("python:3.11-slim")
    assert ref == own_image("python:3.11-slim")[0] != own_image("debian:12")[0]
    assert ref.startswith("cd4ml-front:") and f'{OWN_LABEL}="{ref.split(":")[1]}"' in dockerfile
    assert "apt-get install" in dockerfile and " nginx" in dockerfile
