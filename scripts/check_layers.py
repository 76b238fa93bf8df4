#!/usr/bin/env python3
"""The house rules that check themselves (run by ctest as `layer_rules`):

1. Dependencies point one way: core/ <- storage/ <- api/ <- server/, and cli/ (capi) uses core/
   only. Beast and Asio live in server/ and cli/; sqlite3.h only in storage/sqlite/, libpq-fe.h
   only in storage/postgres/.
2. Every header compiles on its own, with the flags of its folder's units (from the build's
   compile_commands.json).

    scripts/check_layers.py [BUILD_DIR]     (default: build/asan)
"""
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["core", "storage", "api", "server", "cli"]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)

# For each folder: the project folders and the system headers it must not include.
PROJECT_FORBIDDEN = {
    "core": ["storage/", "api/", "server/", "cli/"],
    "storage": ["api/", "server/", "cli/"],
    "api": ["server/", "cli/"],
    "server": ["cli/"],
    "cli": ["storage/", "api/", "server/"],
}
SYSTEM_FORBIDDEN = {
    "core": ["boost/beast", "boost/asio", "sqlite3.h", "libpq-fe.h"],
    "storage": ["boost/beast", "boost/asio"],
    "api": ["boost/beast", "boost/asio", "sqlite3.h", "libpq-fe.h"],
    "server": ["sqlite3.h", "libpq-fe.h"],
    "cli": ["sqlite3.h", "libpq-fe.h"],
}
# Within storage/, the C APIs of the databases stay in their backend's folder.
ONLY_IN = {"sqlite3.h": "storage/sqlite/", "libpq-fe.h": "storage/postgres/"}


def sources():
    for layer in LAYERS:
        for folder, _, files in os.walk(os.path.join(ROOT, layer)):
            for name in sorted(files):
                if name.endswith((".hpp", ".cpp", ".h")):
                    yield layer, os.path.relpath(os.path.join(folder, name), ROOT)


def layer_violations():
    found = []
    for layer, path in sources():
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            text = f.read()
        for kind, target in INCLUDE.findall(text):
            if kind == '"':
                bad = [p for p in PROJECT_FORBIDDEN[layer] if target.startswith(p)]
            else:
                bad = [p for p in SYSTEM_FORBIDDEN[layer] if target.startswith(p)]
                owner = ONLY_IN.get(target)
                if owner and not path.startswith(owner):
                    bad.append(target)
            if bad:
                found.append(f"{path}: includes {target} ({layer}/ may not)")
    return found


def header_command(entries, header):
    """The compile command of a unit beside `header` (the same name first), made to check it."""
    folder, stem = os.path.split(header)
    stem = os.path.splitext(stem)[0]
    candidates = [e for e in entries if os.path.dirname(os.path.relpath(e["file"], ROOT)) == folder]
    if not candidates:  # a folder of headers only: its parent's units
        parent = os.path.dirname(folder)
        candidates = [e for e in entries if os.path.relpath(e["file"], ROOT).startswith(parent + "/")]
    if not candidates:
        return None
    # Units that see the project's headers (not, say, the Beast compilation unit).
    candidates = [e for e in candidates if "-I" + ROOT in e["command"]] or candidates
    same = [e for e in candidates if os.path.splitext(os.path.basename(e["file"]))[0] == stem]
    entry = (same or candidates)[0]
    args = shlex.split(entry["command"])
    out, skip = [], 0
    for i, a in enumerate(args):
        if skip:
            skip -= 1
            continue
        if a in ("-o", "-c", "-MT", "-MF"):
            skip = 1
            continue
        if a == "-MD":
            continue
        out.append(a)
    return out + ["-fsyntax-only", "-x", "c++", "-"], entry["directory"]


def check_header(entries, header):
    made = header_command(entries, header)
    if made is None:
        return f"{header}: no unit in its folder to take flags from"
    command, directory = made
    # A unit of its own that includes it twice: it must need nothing before it, and guard itself.
    unit = f'#include "{header}"\n#include "{header}"\n'
    done = subprocess.run(command, cwd=directory, input=unit, capture_output=True, text=True)
    if done.returncode != 0:
        return f"{header} does not compile on its own:\n{done.stderr.strip()[:2000]}"
    return None


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "asan")
    problems = layer_violations()
    with open(os.path.join(build, "compile_commands.json"), encoding="utf-8") as f:
        entries = [e for e in json.load(f) if os.path.relpath(e["file"], ROOT).split("/")[0] in LAYERS]
    headers = [path for _, path in sources() if path.endswith(".hpp")]
    jobs = max(1, min(2, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        problems += [p for p in pool.map(lambda h: check_header(entries, h), headers) if p]
    for p in problems:
        print(p)
    print(f"{len(headers)} headers compiled alone; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
