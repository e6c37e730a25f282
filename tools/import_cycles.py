#!/usr/bin/env python3
"""Import cycles between wgrad's modules.

Reads every file under src/, maps it to a module at the granularity the architecture
talks about (top-level modules; `backend::cpu`, `backend::gpu`; one `ops::<family>` per
op family, with `ops` its root), collects the `crate::...` paths each file names (in
`use` lines and inline), and prints the strongly connected components with more than
one module: the import cycles. Paths through `super::` stay inside a module and are not
counted, nor are unit tests.

    python3 tools/import_cycles.py          # the cycles, one per line
    python3 tools/import_cycles.py --edges  # also every edge between modules

It reports twice: between the layers (`backend` counted as one module, the unit the
architecture's layering talks about), then inside `backend` (its children counted
separately: the seam's root names every family's geometry and both backends' storage,
so cycles through `backend` itself are expected there).
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
SPLIT = {"backend", "ops"}  # modules whose children count separately (per report)


def module_of(parts):
    """The module a path (list of components below `crate`) belongs to."""
    if not parts:
        return "lib"
    head = parts[0]
    if head in SPLIT and len(parts) > 1:
        return f"{head}::{parts[1]}"
    return head


def file_module(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel == ["lib"]:
        return "lib"
    return module_of(rel)


def known_modules():
    mods = set()
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".rs"):
                mods.add(file_module(os.path.join(dirpath, f)))
    return mods


PATH = re.compile(r"crate::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)")
GROUP = re.compile(r"use crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)::\{")


def edges(mods):
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            src = os.path.join(dirpath, f)
            me = file_module(src)
            text = open(src, encoding="utf-8").read()
            # Unit tests (the `#[cfg(test)] mod tests` at a file's end) are not the
            # library's structure.
            text = text.split("#[cfg(test)]\nmod tests")[0]
            # Doc comments and comments name paths without importing them.
            code = "\n".join(l.split("//")[0] for l in text.splitlines())
            found = set()
            for m in PATH.finditer(code):
                parts = m.group(1).split("::")
                # Drop the item: keep the longest prefix that is a module.
                for k in range(len(parts), 0, -1):
                    cand = module_of(parts[:k])
                    if cand in mods and (k > 1 or parts[0] in mods or cand == parts[0]):
                        found.add(cand)
                        break
            for m in GROUP.finditer(code):
                found.add(module_of(m.group(1).split("::")))
            found.discard(me)
            # `crate::Foo` re-exported from lib.rs counts as lib.
            out.setdefault(me, set()).update(f for f in found if f in mods)
    return out


def sccs(graph):
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def report(title, keep):
    """Prints the cycles among the modules `keep` selects."""
    mods = known_modules()
    graph = {a: {b for b in bs if keep(b)} for a, bs in edges(mods).items() if keep(a)}
    print(f"{title}:")
    if "--edges" in sys.argv:
        for a in sorted(graph):
            print(f"  {a} -> {', '.join(sorted(graph[a]))}")
    cycles = [c for c in sccs(graph) if len(c) > 1]
    if not cycles:
        print("  no import cycles")
    for c in cycles:
        print(f"  cycle of {len(c)}: {', '.join(c)}")


def main():
    global SPLIT
    SPLIT = {"ops"}
    report("between layers (backend as one module)", lambda m: True)
    SPLIT = {"backend", "ops"}
    report("inside backend", lambda m: m == "backend" or m.startswith("backend::"))


if __name__ == "__main__":
    main()
