"""Run django-oauth-toolkit's own test suite against this provider, through an import alias.

The test modules of DOT 3.4.1 are the specification of the behaviour a project moving over relies
on. This script lays them out in a scratch folder, makes ``import oauth2_provider`` (and every
``oauth2_provider.*`` submodule) resolve to ``oauth_provider``, renames the few strings that name the
app label (``"oauth2_provider.AccessToken"`` and the like), and runs them with pytest. Nothing of
DOT's own package is imported: only its tests and their support modules.

Where the test modules come from (nothing of DOT is kept in this repository):

- ``--dot DIR``: an unpacked DOT source tree (the sdist, or a checkout) holding ``tests/test_*.py``.
  Without it the sdist of the version in ``--version`` is fetched with ``pip download`` into
  ``--cache`` and unpacked there.
- ``--support DIR``: a DOT checkout whose ``tests/`` holds the support modules the sdist does not
  ship (``conftest.py``, ``settings.py``, ``presets.py``, ``models.py``, ``urls.py``...). Only the
  files missing from ``--dot`` are taken from it. A git directory is read with ``git archive``
  (``--support-ref``, default ``HEAD``).

It prints a table of passed / failed / errors per test module and the totals, and, with
``--failures FILE``, writes every failing test id with the first line of its error.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

SUPPORT_FILES = (
    "__init__.py",
    "conftest.py",
    "settings.py",
    "presets.py",
    "models.py",
    "urls.py",
    "utils.py",
    "common_testing.py",
    "admin.py",
    "custom_hasher.py",
    "db_router.py",
    "views.py",
    "mig_settings.py",
    "multi_db_settings.py",
    "multi_db_settings_invalid_token_configuration.py",
    "settings_swapped.py",
)

# A string naming one of the provider's models by app label, e.g. "oauth2_provider.AccessToken".
MODEL_LABEL = re.compile(r"""(["'])oauth2_provider\.([A-Z]\w*)\1""")
# The app label alone as a string literal, e.g. apps.get_model("oauth2_provider", ...).
APP_LABEL = re.compile(r"""(["'])oauth2_provider\1""")


def fetch_sdist(version: str, cache: Path) -> Path:
    target = cache / f"django_oauth_toolkit-{version}"
    if (target / "tests").is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(cache),
            f"django-oauth-toolkit=={version}",
        ],
        check=True,
    )
    archive = next(cache.glob(f"django_oauth_toolkit-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return target


def support_tree(support: Path, ref: str, scratch: Path) -> Path:
    """A folder with the support modules: the checkout itself, or an export of a git directory."""
    if (support / "tests").is_dir():
        return support / "tests"
    out = scratch / "support"
    out.mkdir()
    archive = subprocess.run(
        ["git", "--git-dir", str(support), "archive", ref, "tests"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "tests"


def rename_labels(text: str) -> str:
    text = MODEL_LABEL.sub(lambda m: f"{m[1]}oauth_provider.{m[2]}{m[1]}", text)
    return APP_LABEL.sub(lambda m: f"{m[1]}oauth_provider{m[1]}", text)


def tolerate_missing_names(text: str) -> str:
    """Each top-level ``from oauth2_provider... import a, b`` becomes one placeholder-tolerant import per
    name (dot_missing.py), so an absent name fails the tests that use it, not the whole module."""
    lines = text.splitlines(keepends=True)
    for node in reversed(ast.parse(text).body):
        if not isinstance(node, ast.ImportFrom):
            continue
        # DOT's own names, and its test models (an older support checkout lacks some of them).
        module = f"tests.{node.module}" if node.level == 1 and node.module == "models" else node.module or ""
        if not (module.startswith("oauth2_provider") or module == "tests.models"):
            continue
        new = ["from dot_missing import import_or_missing\n"]
        for alias in node.names:
            new.append(f"{alias.asname or alias.name} = import_or_missing({module!r}, {alias.name!r})\n")
        lines[node.lineno - 1 : node.end_lineno] = new
    return "".join(lines)


def lay_out(dot: Path, support: Path | None, support_ref: str, scratch: Path) -> Path:
    work = scratch / "work"
    tests = work / "tests"
    shutil.copytree(dot / "tests", tests, ignore=shutil.ignore_patterns("migrations", "app", "__pycache__"))
    if support is not None:
        extra = support_tree(support, support_ref, scratch)
        for name in SUPPORT_FILES:
            if not (tests / name).exists() and (extra / name).exists():
                shutil.copy(extra / name, tests / name)
        if (extra / "templates").is_dir() and not (tests / "templates").exists():
            shutil.copytree(extra / "templates", tests / "templates")
    missing = [n for n in ("conftest.py", "settings.py", "presets.py") if not (tests / n).exists()]
    if missing:
        raise SystemExit(f"support modules missing from {dot}/tests and --support: {', '.join(missing)}")
    (tests / "__init__.py").touch()
    for path in tests.glob("*.py"):
        text = rename_labels(path.read_text())
        path.write_text(tolerate_missing_names(text) if path.name.startswith("test_") else text)
    # pytest-django 4.11 renamed Settings.finalize() to _finalize(), which DOT 3.4's conftest calls.
    conftest = tests / "conftest.py"
    conftest.write_text(
        conftest.read_text().replace(
            "self.settings.finalize()",
            '(getattr(self.settings, "finalize", None) or self.settings._finalize)()',
        )
    )
    # Presets added by DOT after the support checkout was taken; harmless when already defined.
    with (tests / "presets.py").open("a") as fh:
        fh.write((HERE / "presets_addendum.py").read_text())
    for name in ("dot_alias.py", "dot_missing.py", "dot_settings.py", "pytest.ini"):
        shutil.copy(HERE / name, work / name)
    return work


def run_pytest(work: Path, junit: Path, extra: list[str]) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(work), str(PROJECT_ROOT), env.get("PYTHONPATH", "")])
    env["DJANGO_SETTINGS_MODULE"] = "dot_settings"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "dot_alias",
        "-q",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
    ]
    cmd += ["--junitxml", str(junit), "-o", "junit_family=xunit2", *(extra or ["tests"])]
    return subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL).returncode


def tests_in_module(path: Path) -> int:
    """How many test functions a module defines (parametrized ones count once)."""
    tree = ast.parse(path.read_text())
    return sum(
        1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    )


def report(junit: Path, tests_dir: Path, failures_file: Path | None) -> tuple[int, int, int]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    lines = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        # A module that failed to import is one test case named after the module.
        dotted = case.get("classname") or case.get("name", "")
        module = dotted.split(".")[1] if "." in dotted else dotted
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        if failure is not None or error is not None:
            node = failure if failure is not None else error
            message = (node.get("message") or "").strip().splitlines()
            if not case.get("classname"):
                # Its tests never ran: count each as an error, with the import error as the reason.
                counts[module][2] += max(1, tests_in_module(tests_dir / f"{module}.py"))
                message = [ln[2:] for ln in (node.text or "").splitlines() if ln.startswith("E ")][-1:]
            else:
                counts[module][1 if failure is not None else 2] += 1
            lines.append(
                f"{case.get('classname')}::{case.get('name')}\t{'FAIL' if failure is not None else 'ERROR'}"
                f"\t{message[0][:200] if message else ''}"
            )
        elif skipped is not None:
            counts[module][3] += 1
        else:
            counts[module][0] += 1
    print(f"{'module':40} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8}")
    total = [0, 0, 0, 0]
    for module in sorted(counts):
        row = counts[module]
        total = [a + b for a, b in zip(total, row, strict=True)]
        print(f"{module:40} {row[0]:7} {row[1]:7} {row[2]:7} {row[3]:8}")
    print(f"{'total':40} {total[0]:7} {total[1]:7} {total[2]:7} {total[3]:8}")
    if failures_file:
        failures_file.write_text("\n".join(sorted(lines)) + "\n")
    return total[0], total[1], total[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dot", type=Path, help="unpacked DOT source tree with tests/test_*.py")
    parser.add_argument("--version", default="3.4.1", help="DOT version to download without --dot")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dot_suite")
    parser.add_argument("--support", type=Path, help="DOT checkout or git directory for support modules")
    parser.add_argument("--support-ref", default="HEAD")
    parser.add_argument("--failures", type=Path, help="write failing test ids and messages here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and print its path")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --), e.g. -k or a module")
    args = parser.parse_args()

    dot = args.dot or fetch_sdist(args.version, args.cache)
    scratch = Path(tempfile.mkdtemp(prefix="dot_suite_"))
    try:
        work = lay_out(dot, args.support, args.support_ref, scratch)
        junit = scratch / "junit.xml"
        run_pytest(work, junit, args.pytest_args)
        passed, failed, errors = report(junit, work / "tests", args.failures)
        print(f"dot_suite: {passed} passed, {failed + errors} failed")
    finally:
        if args.keep:
            print(f"scratch folder: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
