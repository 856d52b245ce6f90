#!/usr/bin/python3
"""Execute sslkit notebooks headlessly with the project's tslab kernel (through nbclient).

Usage (normally through `npm run notebooks -- [paths]`, i.e. scripts/run-notebooks.sh):
    /usr/bin/python3 scripts/run-notebooks.py [notebook.ipynb ...] [--out-dir DIR]
        [--timeout SECONDS] [--startup-timeout SECONDS] [--preset smoke|quick|paper] [--quiet]

Every notebook runs in a fresh kernel, in the notebook's own folder, cell by cell, with a
per-cell timeout. The executed notebook is written to the output folder (default
notebooks/_executed/) whether it passed or not (outputs up to the failing cell). On a failure
the runner prints the notebook, the cell number, the cell's source and the error's name, message
and stack, and the exit status is non-zero.

Why not `jupyter nbconvert --execute`: tslab reports a failing cell only as an execute_reply
with status "error" and the error printed on the cell's stderr (no ename/evalue/traceback), so
nbconvert shows nothing but the source; and with --allow-errors tslab aborts the queued requests
after an error, so every later cell is silently skipped.
"""

import argparse
import glob
import math
import os
import re
import sys
import time

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "run-notebooks: needs nbclient and nbformat in %s (%s).\n"
        "On Debian/Ubuntu: apt-get install jupyter-nbconvert python3-nbclient python3-ipykernel\n"
        % (sys.executable, exc)
    )
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_NAME = "tslab"
PROGRESS_ECHO_SECONDS = 10.0


def default_preset():
    """SSLKIT_PRESET if set, else smoke under CI=true, else quick."""
    preset = os.environ.get("SSLKIT_PRESET", "").strip()
    if preset:
        return preset
    return "smoke" if os.environ.get("CI", "").lower() == "true" else "quick"


def default_notebooks():
    return sorted(
        p for p in glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")) if not os.path.basename(p).startswith(".")
    )


def cell_text(value):
    return "".join(value) if isinstance(value, list) else (value or "")


def stream_text(cell, name):
    return "".join(cell_text(o.get("text")) for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == name)


ERROR_LINE = re.compile(r"^(?:Uncaught )?([A-Za-z_$][\w$]*(?:Error|Exception)|Error)(?: \[[^\]]*\])?: ?(.*)$")
DIAGNOSTIC_LINE = re.compile(r"^(\d+):(\d+) - (.*)$")


INTERNAL_FRAME = re.compile(r"\(node:vm:|[\\/]tslab[\\/]dist[\\/]|sigintHandlersWrap|node:internal")


def trim_stack(stack):
    """Drop the kernel's own frames (node:vm, tslab) after the notebook's frames."""
    out = []
    for line in stack:
        if out and line.strip().startswith("at ") and INTERNAL_FRAME.search(line):
            break
        out.append(line)
    return out


def parse_error(stderr):
    """Name, message and stack of the error tslab printed on the cell's stderr.

    tslab prints a thrown error with console.error (Node's inspect: "Name: message\\n    at ...")
    and TypeScript diagnostics as "line:col - message".
    """
    lines = [l.rstrip("\n") for l in stderr.splitlines()]
    for i, line in enumerate(lines):
        m = ERROR_LINE.match(line.strip())
        if m:
            stack = [line.strip()]
            for follow in lines[i + 1 :]:
                if follow.strip().startswith("at ") or follow.startswith("    "):
                    stack.append(follow.rstrip())
                else:
                    break
            return m.group(1), m.group(2), "\n".join(trim_stack(stack))
    diags = [l for l in lines if DIAGNOSTIC_LINE.match(l.strip())]
    if diags:
        return "TypeScriptError", "; ".join(d.strip() for d in diags), "\n".join(diags)
    text = stderr.strip()
    if text:
        last = text.splitlines()[-1]
        return "Error", last, text
    return "Error", "the cell failed without printing an error (status 'error' from the kernel)", ""


class EchoingClient(NotebookClient):
    """NotebookClient that echoes a cell's stream output (and progress displays) to the terminal live."""

    def __init__(self, nb, echo=True, label="", **kw):
        super().__init__(nb, **kw)
        self.echo = echo
        self.label = label
        self._last_update = {}

    def _write(self, text):
        if not self.echo or not text:
            return
        prefix = "  | "
        body = "".join(prefix + line + "\n" for line in text.rstrip("\n").split("\n"))
        sys.stdout.write(body)
        sys.stdout.flush()

    def process_message(self, msg, cell, cell_index):
        msg_type = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        content = msg.get("content", {})
        try:
            if msg_type == "stream":
                self._write(content.get("text", ""))
            elif msg_type in ("display_data", "update_display_data"):
                data = content.get("data", {})
                text = data.get("text/plain")
                display_id = (content.get("transient") or {}).get("display_id")
                now = time.time()
                if text and display_id:
                    last = self._last_update.get(display_id, 0.0)
                    if msg_type == "display_data" or now - last >= PROGRESS_ECHO_SECONDS:
                        self._last_update[display_id] = now
                        self._write(cell_text(text))
                elif text:
                    kinds = ", ".join(k for k in data.keys() if k != "text/plain")
                    self._write(cell_text(text) + (" [%s]" % kinds if kinds else ""))
        except Exception:  # echo is best effort, never break execution
            pass
        return super().process_message(msg, cell, cell_index)


def error_output(ename, evalue, stack):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=stack.splitlines() or [ename + ": " + evalue])


def run_notebook(path, out_dir, timeout, startup_timeout, echo):
    """Execute one notebook; returns (ok, executed_path, failure_report or None)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "TypeScript (sslkit tslab)", "language": "typescript"}
    name = os.path.basename(path)
    out_path = os.path.join(out_dir, name)
    client = EchoingClient(
        nb,
        echo=echo,
        label=name,
        timeout=int(math.ceil(timeout)),
        startup_timeout=int(math.ceil(startup_timeout)),
        kernel_name=KERNEL_NAME,
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    state = {"index": None, "start": 0.0}
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]

    def on_start(cell, cell_index, **_):
        if cell.cell_type != "code" or not cell_text(cell.source).strip():
            return
        state["index"] = cell_index
        state["start"] = time.time()
        if echo:
            first = cell_text(cell.source).strip().splitlines()[0][:80]
            print("[%s] cell %d (%d/%d): %s" % (name, cell_index + 1, code_cells.index(cell_index) + 1, len(code_cells), first), flush=True)

    def on_executed(cell, cell_index, execute_reply, **_):
        if echo:
            status = (execute_reply or {}).get("content", {}).get("status", "?")
            print("[%s] cell %d %s in %.1f s" % (name, cell_index + 1, status, time.time() - state["start"]), flush=True)

    client.on_cell_start = on_start
    client.on_cell_executed = on_executed
    failure = None
    started = time.time()
    try:
        client.execute()
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        idx = state["index"]
        cell = nb.cells[idx] if idx is not None else None
        if isinstance(exc, CellTimeoutError):
            ename, evalue, stack = "CellTimeoutError", "the cell did not finish within %s s (per-cell timeout)" % timeout, ""
        elif isinstance(exc, DeadKernelError):
            ename, evalue, stack = "DeadKernelError", "the kernel died while running the cell: %s" % exc, stream_text(cell, "stderr") if cell else ""
        elif isinstance(exc, CellExecutionError) and cell is not None:
            ename, evalue, stack = parse_error(stream_text(cell, "stderr"))
        else:
            ename, evalue, stack = type(exc).__name__, str(exc).strip().splitlines()[-1] if str(exc).strip() else "", str(exc)
        if cell is not None:
            cell.outputs.append(error_output(ename, evalue, stack))
        failure = {
            "notebook": path,
            "cell": (idx + 1) if idx is not None else None,
            "code_cell": (code_cells.index(idx) + 1) if idx in code_cells else None,
            "code_cells": len(code_cells),
            "source": cell_text(cell.source) if cell is not None else "",
            "ename": ename,
            "evalue": evalue,
            "stack": stack,
            "stderr": stream_text(cell, "stderr") if cell is not None else "",
        }
    os.makedirs(out_dir, exist_ok=True)
    nbformat.write(nb, out_path)
    seconds = time.time() - started
    return failure is None, out_path, failure, seconds


def print_failure(f):
    bar = "=" * 78
    lines = [
        bar,
        "NOTEBOOK FAILED: %s" % f["notebook"],
        "cell %s%s:" % (f["cell"], " (code cell %d of %d)" % (f["code_cell"], f["code_cells"]) if f.get("code_cell") else ""),
        "-" * 78,
        f["source"].rstrip(),
        "-" * 78,
        "%s: %s" % (f["ename"], f["evalue"]),
    ]
    if f["stack"]:
        lines += ["stack:", f["stack"].rstrip()]
    extra = f["stderr"].strip()
    if extra and extra != f["stack"].strip():
        lines += ["cell stderr:", "\n".join(trim_stack(extra.splitlines()))]
    lines.append(bar)
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def machine_description():
    """'<cpu model>, N cores' of this machine, for the notebook's metadata."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores" % (model or "unknown CPU", os.cpu_count() or 0)


def git_commit():
    """The checkout's short commit, with '+changes' when the work tree differs from it."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "lib", "scripts"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def publish(executed_path, source_path, preset, seconds):
    """Write an executed notebook over its source: outputs kept, per-cell timing metadata dropped
    (it changes on every run), and what produced it recorded in metadata.sslkit."""
    nb = nbformat.read(executed_path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["sslkit"] = {"preset": preset, "commit": git_commit(), "machine": machine_description(), "seconds": round(seconds)}
    nbformat.write(nb, source_path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Execute sslkit notebooks with the tslab kernel (nbclient).")
    ap.add_argument("notebooks", nargs="*", help="notebook paths (default: notebooks/*.ipynb)")
    ap.add_argument("--out-dir", default=os.environ.get("SSLKIT_NOTEBOOK_OUT", os.path.join(ROOT, "notebooks", "_executed")))
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("SSLKIT_CELL_TIMEOUT", "3600")), help="per-cell timeout in seconds (default 3600, env SSLKIT_CELL_TIMEOUT)")
    ap.add_argument("--startup-timeout", type=float, default=120.0, help="kernel start timeout in seconds")
    ap.add_argument("--preset", default=None, help="SSLKIT_PRESET for the notebooks (default: $SSLKIT_PRESET, else smoke when CI=true, else quick)")
    ap.add_argument("--quiet", action="store_true", help="do not echo cell output")
    ap.add_argument("--in-place", action="store_true", help="write each notebook that passed back over its source (publishing its outputs); a failed run leaves the source alone")
    args = ap.parse_args(argv)

    preset = args.preset or default_preset()
    os.environ["SSLKIT_PRESET"] = preset
    jupyter_path = os.path.join(ROOT, ".jupyter-env", "share", "jupyter")
    existing = os.environ.get("JUPYTER_PATH", "")
    os.environ["JUPYTER_PATH"] = jupyter_path + (os.pathsep + existing if existing else "")
    if not os.path.exists(os.path.join(jupyter_path, "kernels", KERNEL_NAME, "kernel.json")):
        sys.stderr.write("run-notebooks: no tslab kernelspec under %s; run: bash scripts/setup-kernel.sh\n" % jupyter_path)
        return 2

    paths = args.notebooks or default_notebooks()
    if not paths:
        print("run-notebooks: no notebooks found under notebooks/")
        return 0
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        sys.stderr.write("run-notebooks: not found: %s\n" % ", ".join(missing))
        return 2

    print("run-notebooks: %d notebook(s), SSLKIT_PRESET=%s, per-cell timeout %g s, output %s" % (len(paths), preset, args.timeout, args.out_dir), flush=True)
    failures = []
    for path in paths:
        ok, out_path, failure, seconds = run_notebook(path, args.out_dir, args.timeout, args.startup_timeout, not args.quiet)
        print("run-notebooks: %s %s in %.1f s -> %s" % (path, "passed" if ok else "FAILED", seconds, out_path), flush=True)
        if ok and args.in_place:
            publish(out_path, path, preset, seconds)
            print("run-notebooks: published the outputs into %s (%.1f MB)" % (path, os.path.getsize(path) / 1e6), flush=True)
        if failure:
            print_failure(failure)
            failures.append(failure)
    passed = len(paths) - len(failures)
    if failures:
        sys.stderr.write("run-notebooks: %d of %d notebook(s) failed\n" % (len(failures), len(paths)))
    else:
        print("run-notebooks: all %d notebook(s) passed" % len(paths))
    # The plain closing line that CI reads.
    print("notebooks: %d passed, %d failed" % (passed, len(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
