"""GitHub Actions on this machine: workflows executed as GitHub would, for tests.

    runner = Runner(root, gh, repository, python, secrets={...}, variables={...})
    run = runner.push(sha)                           # every workflow a push to main starts
    run = runner.pull_request(7, head_sha, "fix")    # ... a pull request
    run = runner.dispatch("promote.yml", {"pipeline": "wine", "version": "1"})
    assert run.conclusion == "success", run.log()

- :mod:`tests.actions.expressions`: ``${{ }}`` (contexts, operators, functions, ``if:``).
- :mod:`tests.actions.runner`: events and their payload files, the ``on:`` filter, jobs in
  ``needs`` order with ``if:``, matrices and outputs, steps in order with ``env:``/``if:``,
  ``GITHUB_*``/``RUNNER_*``, ``GITHUB_OUTPUT``/``GITHUB_ENV``/``GITHUB_PATH``/
  ``GITHUB_STEP_SUMMARY``, workflow commands (``::notice::``), environments with required
  reviewers (approvals recorded on the local GitHub server for the run).
- :mod:`tests.actions.emulated`: the actions a ``uses:`` may name (checkout, setup-python,
  upload/download-artifact) and the Python they set up; any other action, or any workflow key
  the runner does not know, is an error so that workflows cannot outgrow the emulation silently.
"""

from tests.actions.emulated import Python
from tests.actions.runner import JobResult, Runner, RunResult

__all__ = ["JobResult", "Python", "RunResult", "Runner"]
