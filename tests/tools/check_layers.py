#!/usr/bin/env python3
"""The layering of loom, checked: every `#include "..."` in the tree is an arrow of
tools/layers.txt, and every library layer's CMake target links exactly the layers the table
lets it include (CMakeLists.txt builds them from the same table; this checks the build made).

    check_layers.py SOURCE_DIR [BUILD_DIR] [--inject FILE:HEADER]

--inject adds `#include "HEADER"` to FILE as if it were written there (the test that the check
fails on an upward include: tests/CMakeLists.txt).

An include is named by its path from the repository root ("runtime/cpu/exec_cpu.h"); the
layer of a file is the longest folder of the table that holds it. Files outside every layer
(tests/, bench/) may include anything. An include of a file that does not exist (and is not
generated: frontend/lexer.h, frontend/parser.h) or a relative include ("../x.h") fails too.
Prints each offending line as FILE:LINE: LAYER includes HEADER (LAYER2), not an arrow of
tools/layers.txt; exit status 1 if there is any.
"""
import os
import re
import sys

GENERATED = {"frontend/lexer.h", "frontend/parser.h"}


def read_table(path):
    layers = {}
    for line in open(path):
        line = line.split("#", 1)[0].split()
        if line:
            layers[line[0]] = (line[1], set(line[2:]))
    return layers


def layer_of(path, layers):
    best = None
    for name in layers:
        if path.startswith(name + "/") and (best is None or len(name) > len(best)):
            best = name
    return best


def main():
    args = sys.argv[1:]
    inject = {}
    if "--inject" in args:
        i = args.index("--inject")
        f, _, h = args[i + 1].partition(":")
        inject[f] = h
        del args[i:i + 2]
    src = os.path.abspath(args[0])
    build = args[1] if len(args) > 1 else None
    layers = read_table(os.path.join(src, "tools/layers.txt"))
    bad = []
    inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    n_files = n_includes = 0
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, src)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.startswith("build")]
        for f in files:
            if not f.endswith((".c", ".h", ".l", ".y", ".def")):
                continue
            rel = os.path.normpath(os.path.join(rel_root, f))
            mine = layer_of(rel, layers)
            n_files += 1
            lines = open(os.path.join(root, f), errors="replace").read().split("\n")
            if rel in inject:
                lines.append('#include "%s"' % inject[rel])
            for lineno, line in enumerate(lines, 1):
                m = inc.match(line)
                if not m:
                    continue
                n_includes += 1
                target = m.group(1)
                where = "%s:%d" % (rel, lineno)
                if target.startswith("..") or "/../" in target:
                    bad.append("%s: relative include \"%s\" (name it from the repository root)" % (where, target))
                    continue
                if "/" not in target:  # a file beside this one (tests' own headers)
                    if mine is not None:
                        bad.append("%s: include \"%s\" without its layer's folder" % (where, target))
                    elif not os.path.exists(os.path.join(root, target)):
                        bad.append("%s: include \"%s\": no such file beside it" % (where, target))
                    continue
                if target not in GENERATED and not os.path.exists(os.path.join(src, target)):
                    bad.append("%s: include \"%s\": no such file" % (where, target))
                    continue
                theirs = layer_of(target, layers)
                if mine is None or theirs == mine:
                    continue
                if theirs is None:
                    bad.append("%s: %s includes %s, which is in no layer of tools/layers.txt" % (where, mine, target))
                elif theirs not in layers[mine][1]:
                    bad.append("%s: %s includes %s (%s), not an arrow of tools/layers.txt" % (where, mine, target, theirs))
    # the build: each library layer's target links exactly the table's layers (the link
    # interface of loom_<layer> as CMake generated it: BUILD/layers_linked.txt)
    if build:
        linked = {}
        for line in open(os.path.join(build, "layers_linked.txt")):
            tgt, _, libs = line.partition(":")
            linked[tgt.strip()] = {l for l in libs.replace(";", " ").split() if l.startswith("loom_")}
        for name, (kind, deps) in layers.items():
            if kind != "lib":
                continue
            tgt = "loom_" + name.replace("/", "_")
            want = {"loom_" + d.replace("/", "_") for d in deps if layers.get(d, ("",))[0] == "lib"}
            if tgt not in linked:
                bad.append("%s: no CMake target %s (CMakeLists.txt builds one per library layer)" % (name, tgt))
            elif linked[tgt] != want:
                bad.append("%s: CMake target %s links %s, the table says %s" %
                           (name, tgt, " ".join(sorted(linked[tgt])) or "nothing", " ".join(sorted(want)) or "nothing"))
    for b in bad:
        print(b)
    print("check_layers: %d files, %d includes, %d layers: %s" %
          (n_files, n_includes, len(layers), "ok" if not bad else "%d violations" % len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
