"""SQL over a Chrome trace-event file, as Perfetto's trace processor answers it.

open_trace(path) gives an object with query(sql) -> list of dicts. It uses Perfetto's own trace
processor (the `perfetto` package from PyPI) when its binary is on this machine:
$LOOM_TRACE_PROCESSOR, `trace_processor_shell` on PATH, or the copy the package cached in
~/.local/share/perfetto/prebuilts. The package does not ship that binary: it downloads it from
Google's storage on first use, which a machine that reaches only the package registries cannot
do. Then the same queries run on this module's loader, which imports the JSON with the trace
processor's rules into SQLite under the trace processor's names:

  process(upid, pid, name)  thread(utid, tid, upid, name)  thread_track(id, utid)
  slice(id, ts, dur, name, category, depth, parent_id, track_id, arg_set_id)   ns, as Perfetto
  flow(slice_out, slice_in)     EXTRACT_ARG(arg_set_id, 'args.NAME')

Import rules followed: "X" events are slices on the track of their (pid, tid), nested by time
(depth 0 at the top); "M" events name processes and threads; a flow "s" event binds to the
deepest slice on its track enclosing its time, an "f" event with "bp":"e" likewise, and the two
ends of one flow share (cat, name, id). A malformed trace raises (a JSON error, an "X" without
ts or dur, a slice that overlaps its parent without nesting), as the trace processor reports it.
"""
import glob
import json
import os
import shutil
import sqlite3


def _perfetto_shell():
    cands = [os.environ.get("LOOM_TRACE_PROCESSOR"), shutil.which("trace_processor_shell")]
    cands += sorted(glob.glob(os.path.expanduser("~/.local/share/perfetto/prebuilts/trace_processor_shell*")))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK) and not c.endswith(".tmp"):
            return c
    return None


class _Perfetto:
    engine = "perfetto trace processor"

    def __init__(self, path, shell):
        from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig
        self.tp = TraceProcessor(trace=path, config=TraceProcessorConfig(bin_path=shell))

    def query(self, sql):
        return [dict(r.__dict__) for r in self.tp.query(sql)]

    def close(self):
        self.tp.close()


class _Loader:
    engine = "loom's loader (Perfetto's import rules over SQLite; no trace processor binary here)"

    def __init__(self, path):
        with open(path) as f:
            doc = json.load(f)
        events = doc["traceEvents"] if isinstance(doc, dict) else doc
        db = self.db = sqlite3.connect(":memory:")
        db.executescript("""
            create table process(upid integer primary key, pid int, name text);
            create table thread(utid integer primary key, tid int, upid int, name text);
            create table thread_track(id integer primary key, utid int);
            create table slice(id integer primary key, ts int, dur int, name text, category text, depth int,
                               parent_id int, track_id int, arg_set_id int);
            create table flow(id integer primary key, slice_out int, slice_in int);
        """)
        self.args = {}
        procs, threads = {}, {}

        def upid(pid):
            if pid not in procs:
                procs[pid] = len(procs) + 1
                db.execute("insert into process values (?, ?, NULL)", (procs[pid], pid))
            return procs[pid]

        def track(pid, tid):
            key = (pid, tid)
            if key not in threads:
                threads[key] = len(threads) + 1
                db.execute("insert into thread values (?, ?, ?, NULL)", (threads[key], tid, upid(pid)))
                db.execute("insert into thread_track values (?, ?)", (threads[key], threads[key]))
            return threads[key]

        slices = {}  # track -> [(ts, dur, index in events)]
        flows = []
        for i, e in enumerate(events):
            ph = e.get("ph")
            if ph == "M":
                name = e.get("args", {}).get("name")
                if e.get("name") == "process_name":
                    db.execute("update process set name = ? where upid = ?", (name, upid(e["pid"])))
                elif e.get("name") == "thread_name":
                    db.execute("update thread set name = ? where utid = ?", (name, track(e["pid"], e["tid"])))
            elif ph == "X":
                ts, dur = round(float(e["ts"]) * 1000), round(float(e["dur"]) * 1000)
                slices.setdefault(track(e["pid"], e["tid"]), []).append((ts, dur, i))
            elif ph in ("s", "f"):
                flows.append((ph, e, track(e["pid"], e["tid"]), round(float(e["ts"]) * 1000)))
        sid = 0
        spans = {}  # track -> [(ts, end, depth, id)]
        for tr, lst in slices.items():
            lst.sort(key=lambda x: (x[0], -x[1]))
            stack = []
            for ts, dur, i in lst:
                while stack and stack[-1][1] <= ts:
                    stack.pop()
                if stack and ts + dur > stack[-1][1]:
                    raise ValueError(f"slice '{events[i]['name']}' at {ts} ns overlaps its parent without nesting")
                sid += 1
                e = events[i]
                db.execute("insert into slice values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (sid, ts, dur, e.get("name"), e.get("cat"), len(stack), stack[-1][3] if stack else None,
                            tr, sid))
                self.args[sid] = e.get("args", {})
                spans.setdefault(tr, []).append((ts, ts + dur, len(stack), sid))
                stack.append((ts, ts + dur, len(stack), sid))

        def enclosing(tr, ts):
            best = None
            for a, b, depth, s in spans.get(tr, []):
                if a <= ts <= b and (best is None or depth > best[0]):
                    best = (depth, s)
            return best[1] if best else None

        starts = {}
        flows.sort(key=lambda f: f[3])  # in time, as the trace processor sorts events before parsing
        for ph, e, tr, ts in flows:
            key = (e.get("cat"), e.get("name"), e.get("id"))
            s = enclosing(tr, ts)
            if ph == "s":
                starts[key] = s
            elif key in starts and s is not None and starts[key] is not None:
                db.execute("insert into flow(slice_out, slice_in) values (?, ?)", (starts.pop(key), s))
        db.create_function("EXTRACT_ARG", 2, self._extract_arg)

    def _extract_arg(self, arg_set_id, key):
        v = self.args.get(arg_set_id, {})
        for part in key.split(".")[1:]:
            v = v.get(part) if isinstance(v, dict) else None
        return v if isinstance(v, (int, float, str)) or v is None else json.dumps(v)

    def query(self, sql):
        cur = self.db.execute(sql)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def close(self):
        self.db.close()


def open_trace(path):
    shell = _perfetto_shell()
    if shell:
        return _Perfetto(path, shell)
    return _Loader(path)
