"""Every command-line tool with --help and --version, and its options against README.md.

The C tools are found by glob (``bin/mdeploy-*`` beside the library under test, so a tool added
later is checked too) and the Python CLI is ``python -m mdeploy`` (top level and each
subcommand).  For each: --help exits 0 with a usage line, an option list whose every entry has a
description, and an example; --version exits 0 and prints the version written in
include/mdeploy/mdeploy.h (read here, not from the tool); an unknown option exits 2 naming it and
pointing to --help.  Then the options each --help lists must be exactly those README.md's
"Command-line tools" section documents for that tool (the tables under ``### `TOOL` ``), short
letters included."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from mdeploy import _lib
from conftest import REPO

BIN = Path(_lib.library_path).resolve().parent / "bin"
C_TOOLS = sorted(p.name for p in BIN.glob("mdeploy-*") if p.is_file() and os.access(p, os.X_OK))
PY_COMMANDS = ["run", "inspect", "convert"]
# every tool's own options beyond these two (checked separately)
COMMON = {"--help", "--version"}


def _version() -> str:
    h = (REPO / "include" / "mdeploy" / "mdeploy.h").read_text()
    return re.search(r'#define MDL_VERSION_STRING "([^"]+)"', h).group(1)


def _cmd(tool: str) -> List[str]:
    if tool.startswith("python3 -m mdeploy"):
        return [sys.executable, "-m", "mdeploy", *tool.split()[3:]]
    return [str(BIN / tool)]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*_cmd(tool), *args], capture_output=True, text=True, timeout=60, env=os.environ)


# An option line of --help: C tools (tools/tool_util.h) "  -i, --input IN.npy   text" or
# "      --json   text"; argparse "  -i IN.npy, --input IN.npy" or "  --json   text".
_OPT = re.compile(r"^ {2,6}(?:-(\w)(?: \S+)?, )?(--[a-z][a-z0-9-]*)(.*)$")


def _help_options(text: str) -> Dict[str, Tuple[str, bool]]:
    """{"--long": (short letter or "", has a description)} of a --help text."""
    lines = text.splitlines()
    out: Dict[str, Tuple[str, bool]] = {}
    for k, line in enumerate(lines):
        m = _OPT.match(line)
        if not m:
            continue
        rest = m.group(3)
        # a description on the same line (after two spaces) or on the next, indented further
        described = bool(re.search(r"\S\s{2,}\S", line.strip()) or re.match(r"^\s{2,}\S", rest)) or (
            k + 1 < len(lines) and len(lines[k + 1]) - len(lines[k + 1].lstrip()) > 8 and lines[k + 1].strip() != ""
            and not _OPT.match(lines[k + 1]))
        out[m.group(2)] = (m.group(1) or "", described)
    return out


def _readme_options() -> Dict[str, Dict[str, str]]:
    """{tool: {"--long": short letter or ""}} from README.md's "Command-line tools" tables."""
    text = (REPO / "README.md").read_text()
    sec = text[text.index("## Command-line tools"):]
    sec = sec[: sec.index("\n## ", 3)]
    out: Dict[str, Dict[str, str]] = {}
    for part in re.split(r"^### ", sec, flags=re.M)[1:]:
        tool = re.match(r"`([^`]+)`", part).group(1)
        opts: Dict[str, str] = {}
        for row in re.findall(r"^\| (`[^|]*(?:\\\|[^|]*)*?) \|", part, flags=re.M):
            for short, long in re.findall(r"`(?:-(\w), )?(--[a-z][a-z0-9-]*)", row):
                opts[long] = short
        out[tool] = opts
    return out


ALL_TOOLS = C_TOOLS + ["python3 -m mdeploy"] + [f"python3 -m mdeploy {c}" for c in PY_COMMANDS]


def test_the_c_tools_are_found():
    # the glob must see the tools the Makefile builds (tools/mdeploy-*.c), not an empty directory
    sources = sorted(p.stem for p in (REPO / "tools").glob("mdeploy-*.c"))
    assert sources and set(sources) <= set(C_TOOLS), f"built {C_TOOLS}, sources {sources} (in {BIN})"


@pytest.mark.parametrize("tool", ALL_TOOLS)
def test_help_and_version(tool):
    r = _run(tool, "--help")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith("usage:"), text[:200]
    name = tool if not tool.startswith("python3") else "python -m mdeploy"
    assert name.replace("python3", "python") in text.splitlines()[0] or name in text.splitlines()[0]
    opts = _help_options(text)
    assert COMMON <= set(opts), f"{tool} --help lacks {COMMON - set(opts)}"
    undescribed = [o for o, (_, d) in opts.items() if not d]
    assert not undescribed, f"{tool} --help: no description for {undescribed}"
    if tool != "python3 -m mdeploy":
        assert re.search(r"^examples?:", text, flags=re.M), f"{tool} --help has no example"
    r = _run(tool, "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == _version() and r.stdout.count("\n") == 1, r.stdout


@pytest.mark.parametrize("tool", ALL_TOOLS)
def test_bad_command_line_exits_2(tool):
    # after the required arguments (argparse reports those first)
    args = {"python3 -m mdeploy": ["run", "m.mdl"], "python3 -m mdeploy convert": ["m.onnx", "-o", "m.mdl"]}
    r = _run(tool, *args.get(tool, ["m.mdl"]), "--no-such-option")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--no-such-option" in r.stderr and "--help" in r.stderr, r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("tool", [t for t in ALL_TOOLS if t != "python3 -m mdeploy"])
def test_help_agrees_with_readme(tool):
    readme = _readme_options()
    assert tool in readme, f"README.md's 'Command-line tools' has no section ### `{tool}`"
    documented = readme[tool]
    listed = {o: s for o, (s, _) in _help_options(_run(tool, "--help").stdout).items() if o not in COMMON}
    missing_in_readme = sorted(set(listed) - set(documented))
    missing_in_help = sorted(set(documented) - set(listed))
    assert not missing_in_readme, f"{tool}: options not in README.md: {missing_in_readme}"
    assert not missing_in_help, f"{tool}: README.md documents options its --help lacks: {missing_in_help}"
    shorts = {o: (listed[o], documented[o]) for o in listed if listed[o] != documented[o]}
    assert not shorts, f"{tool}: short letters differ (--help, README): {shorts}"


def test_readme_options_parsed():
    # the README parser itself: a known row with a short letter, a known long-only option
    r = _readme_options()
    assert r["mdeploy-run"]["--input"] == "i" and r["mdeploy-run"]["--threads"] == ""
    assert "--prune" in r["mdeploy-convert"] and len(r["mdeploy-convert"]) >= 30
