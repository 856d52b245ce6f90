import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// Runs scripts/run-notebooks.sh (what `npm run notebooks` runs) on the fixtures in test/fixtures
// with the real tslab kernel through nbclient. The fixtures do not import sslkit, so the test does
// not depend on (or rebuild) lib/dist.
const ROOT = path.resolve(__dirname, "..");
const FIXTURES = path.join(ROOT, "test", "fixtures");

interface Notebook {
  cells: Array<{ cell_type: string; source: string | string[]; outputs?: Array<Record<string, any>> }>;
}

function runRunner(args: string[], env: Record<string, string | undefined>): { status: number | null; output: string } {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, SSLKIT_SKIP_BUILD: "1", ...env })) if (v !== undefined) childEnv[k] = v;
  const r = spawnSync("bash", [path.join(ROOT, "scripts", "run-notebooks.sh"), ...args], {
    cwd: ROOT,
    env: childEnv,
    encoding: "utf8",
    timeout: 80_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout}\n${r.stderr}` };
}

function readNotebook(file: string): Notebook {
  return JSON.parse(fs.readFileSync(file, "utf8")) as Notebook;
}

function text(v: string | string[] | undefined): string {
  return Array.isArray(v) ? v.join("") : (v ?? "");
}

function hasKernel(): boolean {
  return fs.existsSync("/usr/bin/python3") && spawnSync("/usr/bin/python3", ["-c", "import nbclient, nbformat"]).status === 0;
}

test("runner: a passing notebook exits 0, its executed copy holds the outputs, CI=true selects the smoke preset", { skip: !hasKernel() && "needs /usr/bin/python3 with nbclient" }, () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "sslkit-runner-"));
  try {
    const r = runRunner([path.join(FIXTURES, "runner-pass.ipynb"), "--out-dir", out, "--timeout", "60"], { CI: "true", SSLKIT_PRESET: undefined });
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SSLKIT_PRESET=smoke/);
    assert.match(r.output, /all 1 notebook\(s\) passed/);
    const nb = readNotebook(path.join(out, "runner-pass.ipynb"));
    const outputs = nb.cells.filter((c) => c.cell_type === "code").map((c) => c.outputs ?? []);
    assert.match(text(outputs[0][0]?.text), /sum 6/);
    assert.match(text(outputs[1][0]?.text), /preset smoke/);
    assert.equal(outputs[2][0]?.output_type, "display_data");
    assert.match(text(outputs[2][0]?.data?.["text/html"]), /fixture html/);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

test("runner: a broken cell fails the run with the cell, its source and the error; the executed notebook is still written", { skip: !hasKernel() && "needs /usr/bin/python3 with nbclient" }, () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "sslkit-runner-"));
  try {
    const r = runRunner(
      [path.join(FIXTURES, "runner-fail.ipynb"), path.join(FIXTURES, "runner-type-error.ipynb"), "--out-dir", out, "--timeout", "60", "--preset", "quick"],
      {},
    );
    assert.notEqual(r.status, 0, r.output);
    assert.equal(r.status, 1);
    // The failure report: notebook, cell number, the cell's source, error name, message and stack.
    assert.match(r.output, /NOTEBOOK FAILED: .*runner-fail\.ipynb/);
    assert.match(r.output, /cell 3 \(code cell 2 of 3\):/);
    assert.match(r.output, /throw new RangeError\("fixture boom: deliberately broken cell"\);\n\}\nexplode\(\);/);
    assert.match(r.output, /RangeError: fixture boom: deliberately broken cell/);
    assert.match(r.output, /at explode \(/);
    // A TypeScript compile error is reported with its diagnostic.
    assert.match(r.output, /NOTEBOOK FAILED: .*runner-type-error\.ipynb/);
    assert.match(r.output, /TypeScriptError: 1:7 - Type 'string' is not assignable to type 'number'\./);
    assert.match(r.output, /2 of 2 notebook\(s\) failed/);
    // Executed notebook: outputs up to the failing cell, an error output on it, nothing after.
    const nb = readNotebook(path.join(out, "runner-fail.ipynb"));
    const code = nb.cells.filter((c) => c.cell_type === "code");
    assert.match(text(code[0].outputs?.[0]?.text), /before the failure/);
    const errorOut = code[1].outputs?.find((o) => o.output_type === "error");
    assert.equal(errorOut?.ename, "RangeError");
    assert.equal(errorOut?.evalue, "fixture boom: deliberately broken cell");
    assert.deepEqual(code[2].outputs ?? [], []);
    assert.ok(fs.existsSync(path.join(out, "runner-type-error.ipynb")));
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
