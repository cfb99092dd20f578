"""The workflow runner itself (tests/actions) does what GitHub does with a workflow: the ``on:``
filter, jobs in ``needs`` order with their outputs, matrices, ``if:`` with status functions,
GITHUB_OUTPUT/GITHUB_ENV/GITHUB_STEP_SUMMARY, the event payload, secrets and variables; and it
refuses what it does not emulate."""

from __future__ import annotations

import pytest

from tests.actions import Runner
from tests.actions.emulated import NotEmulated
from tests.actions.repos import GitRepo

WORKFLOW = """\
name: t
on:
  push:
    branches: [main]
permissions: {}
env:
  GREETING: ${{ vars.GREETING || 'hello' }}
jobs:
  first:
    runs-on: ubuntu-latest
    permissions: {}
    outputs:
      answer: ${{ steps.a.outputs.answer }}
    steps:
      - id: a
        run: |
          echo "answer=42" >> "$GITHUB_OUTPUT"
          echo "LATER=yes" >> "$GITHUB_ENV"
          echo "## first" >> "$GITHUB_STEP_SUMMARY"
          echo "::notice title=a%3A b::it%2C works"
      - env:
          TOKEN: ${{ secrets.TOKEN }}
        run: |
          test "$LATER" = yes && test "$GREETING" = hi && test "$GITHUB_EVENT_NAME" = push
          grep -q '"ref": "refs/heads/main"' "$GITHUB_EVENT_PATH"
          test "$RUNNER_OS" = Linux && test -d "$RUNNER_TEMP" && test "$CI" = true
          test "$TOKEN" = s3cret && test -z "$GITHUB_TOKEN"
      - if: ${{ failure() }}
        run: exit 3
  second:
    needs: first
    name: second (${{ matrix.n }})
    runs-on: ubuntu-latest
    strategy:
      matrix:
        n: [1, 2]
    steps:
      - env:
          ANSWER: ${{ needs.first.outputs.answer }}
          N: ${{ matrix.n }}
        run: test "$ANSWER" = 42 && test "$N" -ge 1
      - run: echo "leaking $SECRET"; exit 1
        env:
          SECRET: ${{ secrets.TOKEN }}
      - run: echo never
      - if: ${{ always() }}
        run: echo after
  third:
    needs: second
    runs-on: ubuntu-latest
    steps:
      - run: echo never
"""


@pytest.fixture
def repo(tmp_path, github_server):
    repo = GitRepo(tmp_path / "repo")
    (repo.path / ".github" / "workflows").mkdir(parents=True)
    (repo.path / ".github" / "workflows" / "t.yml").write_text(WORKFLOW)
    repo.commit("a workflow")
    return repo


def test_jobs_steps_outputs_env_and_status_functions(repo, tmp_path, github_server):
    runner = Runner(tmp_path / "actions", github_server, repo.path, None,  # type: ignore[arg-type]
                    secrets={"TOKEN": "s3cret"}, variables={"GREETING": "hi"})
    (run,) = runner.push(repo.git("rev-parse", "HEAD"))
    first = run.job("first")
    assert first.result == "success", run.log()
    assert [s.outcome for s in first.steps] == ["success", "success", "skipped"]
    assert first.outputs == {"answer": "42"} and first.summary == "## first\n"
    assert first.annotations == [("notice", "a: b", "it, works")]
    assert [(j.name, j.result) for j in run.jobs if j.id == "second"] == [
        ("second (1)", "failure"), ("second (2)", "failure")]
    assert [s.outcome for s in run.job("second", n=1).steps] == ["success", "failure", "skipped", "success"]
    assert run.job("third").result == "skipped"
    assert run.conclusion == "failure" and run.leaked == {"TOKEN"}
    assert runner.pull_request(3, repo.git("rev-parse", "HEAD"), "main") == []  # not on: pull_request


def test_what_is_not_emulated_is_an_error(repo, tmp_path, github_server):
    path = repo.path / ".github" / "workflows" / "t.yml"
    runner = Runner(tmp_path / "actions", github_server, repo.path, None)  # type: ignore[arg-type]
    # anywhere: a step that would not even run (a skipped job's) counts too
    path.write_text(WORKFLOW.replace("      - run: echo never\n", "      - uses: docker/login-action@v3\n"))
    with pytest.raises(NotEmulated, match="no emulation of this action"):
        runner.push(repo.commit("a step nobody runs"))
    for bad, why in (("      - uses: actions/cache@v4\n", "no emulation of this action"),
                     ("      - run: echo\n        shell: pwsh\n", "not emulated"),
                     ("      - run: echo ${{ hashFiles('x') }}\n", "hashFiles")):
        path.write_text(WORKFLOW.replace("    steps:\n", "    steps:\n" + bad, 1))
        sha = repo.commit(f"use {bad.strip()}")
        with pytest.raises(NotEmulated, match=why):
            runner.push(sha)
