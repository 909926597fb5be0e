"""The Dockerfile (D41), checked without docker, which cannot run here: its final stage runs as a non-root
user, serves with ``--listen`` through the command line this tree parses, and its HEALTHCHECK asks
``/version``. The last test (process lane) runs the image's very CMD and HEALTHCHECK in a private network
namespace, where 0.0.0.0:53952 is free, with only the state directory moved."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digisign_web.cli.main import build_parser
from tests.support.cli import cli_env
from tests.support.paths import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, backslash continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            keyword, _, rest = whole.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    starts = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    assert starts, "no FROM"
    return steps[starts[-1]:]


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def command(stage: list[tuple[str, str]]) -> list[str]:
    cmds = [rest for keyword, rest in stage if keyword == "CMD"]
    assert len(cmds) == 1, "the final stage needs exactly one CMD (exec form)"
    assert not [k for k, _ in stage if k == "ENTRYPOINT"], "CMD alone, so `docker run IMAGE ARGS` replaces it whole"
    return exec_form(cmds[0])


def healthcheck(stage: list[tuple[str, str]]) -> list[str]:
    checks = [rest for keyword, rest in stage if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, form = checks[0].partition("CMD ")
    assert re.fullmatch(r"(--[a-z-]+=\S+\s*)*", options), options
    return exec_form(form)


STAGE = final_stage(DOCKERFILE.read_text())


def test_the_final_stage_runs_as_a_non_root_user_before_its_command() -> None:
    keywords = [keyword for keyword, _ in STAGE]
    users = [i for i, (keyword, _) in enumerate(STAGE) if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    last_user = STAGE[users[-1]][1]
    name, _, group = last_user.partition(":")
    assert name not in ("root", "0") and group not in ("root", "0"), last_user
    assert users[-1] < keywords.index("CMD")
    assert users[-1] < keywords.index("HEALTHCHECK")  # the check runs as the server's uid: D30 admits it
    uid_made = [rest for keyword, rest in STAGE if keyword == "RUN" and f"--uid {name}" in rest]
    assert name.isdigit() and uid_made, "a numeric uid the image creates (runAsNonRoot can check it)"


def test_the_command_is_serve_with_listen_the_virtual_card_and_the_auto_dialog() -> None:
    cmd = command(STAGE)
    assert cmd[0] == "digisign-web"
    args = build_parser().parse_args(cmd[1:])  # this tree's parser takes it as it stands
    assert args.command == "serve"
    assert args.listen == "0.0.0.0" and args.port == 53952
    assert args.virtual_card and args.dialog == "auto"
    assert not args.auto_approve_real_cards
    assert ("EXPOSE", "53952") in STAGE


def test_the_healthcheck_asks_version_on_the_served_port_through_the_servers_ca() -> None:
    check = healthcheck(STAGE)
    assert check[:2] == ["python", "-c"]
    code = check[2]
    compile(code, "HEALTHCHECK", "exec")
    args = build_parser().parse_args(command(STAGE)[1:])
    assert f"https://localhost:{args.port}/version" in code
    assert f"{args.state_dir}/tls/ca.pem" in code  # verified TLS, not a switched-off check
    assert "'1.1'" in code


def test_labels_say_what_the_image_is() -> None:
    labels = " ".join(rest for keyword, rest in STAGE if keyword == "LABEL")
    for key in ("title", "description", "licenses", "version"):
        assert f"org.opencontainers.image.{key}=" in labels


@pytest.mark.process
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("nsenter") is None,
                    reason="needs root for a private network namespace (unshare, nsenter)")
def test_the_images_command_and_healthcheck_work_in_a_private_network_namespace(tmp_path: Path) -> None:
    args = build_parser().parse_args(command(STAGE)[1:])
    state = str(args.state_dir)
    moved = tmp_path / "state"
    cmd = [sys.executable, "-m", "digisign_web", *[str(moved) if a == state else a for a in command(STAGE)[1:]]]
    check = [sys.executable if a == "python" else a.replace(state + "/", f"{moved}/") for a in healthcheck(STAGE)]
    env = {**cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("DIGISIGN_CONF", None)
    server = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    inside = ["nsenter", f"--net=/proc/{server.pid}/ns/net"]
    try:
        assert server.stdout is not None
        output = []
        for line in server.stdout:
            output.append(line)
            if "listening on https://localhost:53952/" in line:
                break
        else:
            raise AssertionError("the image's command did not start:\n" + "".join(output))
        healthy = subprocess.run([*inside, *check], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        server.terminate()  # SIGTERM, as docker stop sends
        assert server.wait(20) == 0
    assert "listening on https://localhost:53952/ (on 0.0.0.0:53952, --listen)" in "".join(output)
    # With the server gone the same check fails: it does test something.
    gone = subprocess.run(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *check],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert gone.returncode != 0
