/**
 * The sweep runner: cache keys, arm folders, Slurm batch scripts (quoting and validation), and real
 * runs: a two-arm local sweep, its rerun from the cache, a sweep killed mid-arm and restarted
 * (same results as uninterrupted), a failing arm beside a good one, and (where a Slurm cluster is
 * up, as CI's from scripts/slurm-local.sh; SSLKIT_TEST_SLURM=1 makes it required) the same sweep
 * through sbatch.
 */
import { spawn, spawnSync } from "node:child_process";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { armHash, canonicalJson, defaultParallel, lastProgressLine, methodConfig, resolveArms, runSweep, shellQuote, slurmBatchScript, slurmManifest, validateSlurmOptions } from "../lib/src";
import type { SweepArm, SweepResult } from "../lib/src";

const ROOT = path.resolve(__dirname, "..");
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "sslkit-sweep-"));

/** Two tiny SimCLR arms (8 steps each, a checkpoint every 2 steps). */
const ARMS: SweepArm[] = [0.1, 0.5].map((temperature) => ({
  name: `tau ${temperature}`,
  method: "simclr",
  preset: "smoke",
  config: { temperature, trainSubset: 256, batchSize: 32, evalTrainSubset: 300, evalTestSubset: 200, checkpointEvery: 2, probeEpochs: 5, knnMonitor: [0, 0] },
}));

const scores = (r: SweepResult) => r.arms.map((a) => ({ name: a.name, encoders: a.results?.encoders.map((e) => [e.encoder, e.knnTop1, e.linearTop1]), loss: a.results?.finalLoss }));

describe("sweep: arms and cache keys", () => {
  test("canonical JSON sorts keys at every depth; the hash follows the configuration, not the name", () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, { f: 2, e: 3 }], c: null } }), '{"a":{"c":null,"d":[1,{"e":3,"f":2}]},"b":1}');
    const c = methodConfig("simclr", "smoke");
    assert.equal(armHash(c, true), armHash({ ...c }, true));
    assert.notEqual(armHash(c, true), armHash(c, false));
    assert.notEqual(armHash(c, true), armHash({ ...c, temperature: 0.3 }, true));
    const [a, b] = resolveArms([{ ...ARMS[0], name: "x" }, ARMS[1]], "/tmp/c", "first");
    assert.equal(a.hash, resolveArms([ARMS[0]], "/tmp/c", "first")[0].hash, "the name is not part of the key");
    assert.ok(a.baselines && !b.baselines, "baselines: first arm only");
    assert.equal(a.config.temperature, 0.1);
    assert.equal(a.config.batchSize, 32);
    assert.equal(a.dir, path.join("/tmp/c", `simclr-${a.hash}`));
  });

  test("the status line picks the newest training progress line of an arm's log", () => {
    const dir = tmp();
    const log = path.join(dir, "log.txt");
    assert.equal(lastProgressLine(log), undefined);
    fs.writeFileSync(log, "sslkit: backend wasm\n[#...] 3/8 ep 1/1 loss 4.1 lr 1e-3 50 img/s ETA 0:05\n[##..] 5/8 ep 1/1 loss 4.0 lr 1e-3 51 img/s ETA 0:03\nwarning: x\n");
    assert.match(lastProgressLine(log) ?? "", /^\[##\.\.\] 5\/8 ep 1\/1/);
    fs.writeFileSync(log, "sslkit: simclr / resnet-small on fashion-mnist\n");
    assert.equal(lastProgressLine(log), "sslkit: simclr / resnet-small on fashion-mnist");
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("SSLKIT_SWEEP_PARALLEL sets how many local arms run at once, and a bad value is an error", () => {
    const saved = process.env.SSLKIT_SWEEP_PARALLEL;
    try {
      delete process.env.SSLKIT_SWEEP_PARALLEL;
      assert.equal(defaultParallel(), 1);
      process.env.SSLKIT_SWEEP_PARALLEL = "3";
      assert.equal(defaultParallel(), 3);
      for (const bad of ["0", "1.5", "two"]) {
        process.env.SSLKIT_SWEEP_PARALLEL = bad;
        assert.throws(() => defaultParallel(), /SSLKIT_SWEEP_PARALLEL must be a positive integer/);
      }
    } finally {
      if (saved === undefined) delete process.env.SSLKIT_SWEEP_PARALLEL;
      else process.env.SSLKIT_SWEEP_PARALLEL = saved;
    }
  });

  test("bad arms are refused with a clear error", () => {
    assert.throws(() => resolveArms([], "/tmp/c", "first"), /no arms/);
    assert.throws(() => resolveArms([ARMS[0], { ...ARMS[0], name: "again" }], "/tmp/c", "first"), /same configuration/);
    assert.throws(() => resolveArms([ARMS[0], { ...ARMS[1], name: ARMS[0].name }], "/tmp/c", "first"), /two arms are named/);
    assert.throws(() => resolveArms([{ name: "m", method: "no-such-method" }], "/tmp/c", "first"), /unknown method 'no-such-method'/);
    assert.throws(() => resolveArms([{ name: "", method: "simclr" }], "/tmp/c", "first"), /needs a name/);
  });
});

describe("sweep: Slurm batch script", () => {
  const opts = { count: 3, manifest: "/shared/sweep/arms.tsv", workDir: "/work/it's here", partition: "gpu", time: "02:00:00", cpusPerTask: 8, gpus: 1, mem: "16G", maxConcurrent: 2 };

  test("directives carry the settings; bash accepts the script", () => {
    const script = slurmBatchScript(opts);
    for (const line of ["#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=02:00:00", "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1", "#SBATCH --mem=16G"]) {
      assert.ok(script.includes(line), `missing '${line}' in\n${script}`);
    }
    assert.ok(script.includes(`cd '/work/it'\\''s here'`), "the working folder is single-quoted");
    const check = spawnSync("bash", ["-n"], { input: script });
    assert.equal(check.status, 0, String(check.stderr));
  });

  test("a configuration value can never run a command", () => {
    for (const [key, bad] of [["partition", "debug\n#SBATCH --wrap=id"], ["partition", "a;touch /tmp/x"], ["time", "1:00 $(id)"], ["mem", "4G`id`"], ["account", "a b"], ["qos", "q\n"]] as const) {
      assert.throws(() => validateSlurmOptions({ [key]: bad }), new RegExp(`bad ${key}`));
    }
    assert.throws(() => validateSlurmOptions({ cpusPerTask: 0 }), /cpusPerTask/);
    assert.throws(() => validateSlurmOptions({ gpus: 1.5 }), /gpus/);
    // a quoted value reaches a command as one literal argument
    const evil = `'; touch /tmp/sslkit-pwned; echo '$(id)\``;
    const echoed = spawnSync("bash", ["-c", `printf %s ${shellQuote(evil)}`]);
    assert.equal(String(echoed.stdout), evil);
    assert.throws(() => shellQuote("a\nb"), /line break/);
    // per-arm values come from the manifest as data; a folder with a tab or newline is refused
    const arm = resolveArms([ARMS[0]], "/tmp/c", "first")[0];
    assert.equal(slurmManifest([arm]), `${arm.dir}\tsimclr\t1\n`);
    assert.throws(() => slurmManifest([{ ...arm, dir: "/tmp/a\nb" }]), /line break/);
  });
});

function sinfoUp(): boolean {
  const r = spawnSync("sinfo", ["-h", "-o", "%T"], { encoding: "utf8" });
  return r.status === 0 && /idle|mixed|allocated/.test(r.stdout);
}

describe("sweep: real runs", () => {
  const quiet = { progress: "none" as const, log: () => {} };

  test("a two-arm local sweep; the second invocation reuses both arms without training", async () => {
    const cacheDir = tmp();
    const first = await runSweep(ARMS, { cacheDir, ...quiet });
    assert.deepEqual(first.arms.map((a) => a.status), ["done", "done"]);
    assert.equal(first.failed.length, 0);
    assert.ok(first.baselines.rawPixels && first.baselines.randomInit, "the first arm computed the baselines");
    assert.deepEqual(first.arms[1].results?.encoders.map((e) => e.encoder), ["learned (simclr)"]);
    for (const a of first.arms) {
      assert.equal(a.results?.steps, 8);
      assert.ok(a.metrics.some((r) => r.type === "step" && typeof r.loss === "number"));
      assert.ok(fs.readdirSync(path.join(a.dir, "weights")).some((d) => d.startsWith("ckpt-")));
    }
    const logSizes = first.arms.map((a) => fs.statSync(path.join(a.dir, "log.txt")).size);
    const second = await runSweep(ARMS, { cacheDir, ...quiet });
    assert.deepEqual(second.arms.map((a) => a.status), ["cached", "cached"]);
    assert.deepEqual(second.table.map((r) => r.cached), [true, true]);
    assert.deepEqual(second.arms.map((a) => fs.statSync(path.join(a.dir, "log.txt")).size), logSizes, "nothing ran");
    assert.deepEqual(scores(second), scores(first));
    // a changed arm is the only one that runs
    const changed = [ARMS[0], { ...ARMS[1], config: { ...ARMS[1].config, seed: 1 } }];
    const third = await runSweep(changed, { cacheDir, ...quiet });
    assert.deepEqual(third.arms.map((a) => a.status), ["cached", "done"]);
    fs.rmSync(cacheDir, { recursive: true, force: true });
  });

  test("a sweep killed mid-arm and started again ends with the results of an uninterrupted one", async () => {
    const straightDir = tmp();
    const killedDir = tmp();
    const straight = await runSweep(ARMS, { cacheDir: straightDir, ...quiet });
    const spec = path.join(killedDir, "spec.json");
    fs.writeFileSync(spec, JSON.stringify({ arms: ARMS, cacheDir: "." }));
    const cli = spawn(process.execPath, [...process.execArgv, path.join(ROOT, "lib/src/cli.ts"), "sweep", spec], { stdio: "ignore", cwd: ROOT });
    const firstArm = resolveArms(ARMS, killedDir, "first")[0];
    const ckpts = path.join(firstArm.dir, "checkpoints");
    const deadline = Date.now() + 120_000;
    // wait for the first arm's first checkpoint (step 2 of 8), then stop the sweep
    while (!(fs.existsSync(ckpts) && fs.readdirSync(ckpts).some((d) => d.startsWith("ckpt-")))) {
      assert.ok(Date.now() < deadline, "the sweep wrote no checkpoint");
      await new Promise((r) => setTimeout(r, 100));
    }
    cli.kill("SIGTERM");
    const code = await new Promise<number | null>((resolve) => cli.on("exit", (c) => resolve(c)));
    assert.equal(code, 143, "the sweep reports the stop");
    assert.ok(!fs.existsSync(path.join(firstArm.dir, "results.json")), "the arm was stopped before it finished");
    const resumed = await runSweep(ARMS, { cacheDir: killedDir, ...quiet });
    assert.deepEqual(resumed.arms.map((a) => a.status), ["done", "done"]);
    assert.match(fs.readFileSync(path.join(firstArm.dir, "log.txt"), "utf8"), /resuming from .*ckpt-/);
    assert.deepEqual(scores(resumed), scores(straight));
    fs.rmSync(straightDir, { recursive: true, force: true });
    fs.rmSync(killedDir, { recursive: true, force: true });
  });

  test("a failed arm is reported with its configuration and log tail, and the other arms go on", async () => {
    const cacheDir = tmp();
    const lines: string[] = [];
    const bad: SweepArm = { name: "missing data", method: "simclr", preset: "smoke", config: { dataset: path.join(cacheDir, "no-such-dataset") } };
    const r = await runSweep([bad, ARMS[0]], { cacheDir, progress: "none", log: (l) => lines.push(l), baselines: "none" });
    assert.deepEqual(r.arms.map((a) => a.status), ["failed", "done"]);
    assert.equal(r.failed[0].name, "missing data");
    assert.match(r.failed[0].error ?? "", /exited with code 1/);
    assert.match(r.failed[0].logTail ?? "", /no-such-dataset/);
    const report = lines.join("\n");
    assert.match(report, /arm 'missing data' FAILED/);
    assert.match(report, /configuration: .*"method":"simclr"/);
    fs.rmSync(cacheDir, { recursive: true, force: true });
  });

  const slurmRequired = process.env.SSLKIT_TEST_SLURM === "1";
  test("the same two arms through a real Slurm cluster (sbatch job array), then from the cache", { skip: !slurmRequired && !sinfoUp() ? "no Slurm cluster up (bash scripts/slurm-local.sh start)" : false }, async () => {
    assert.ok(sinfoUp(), "SSLKIT_TEST_SLURM=1 but sinfo shows no node up");
    const cacheDir = tmp();
    const r = await runSweep(ARMS, { cacheDir, executor: "slurm", slurm: { pollSeconds: 1, cpusPerTask: 1 }, ...quiet });
    assert.deepEqual(r.arms.map((a) => a.status), ["done", "done"], r.failed.map((f) => `${f.error}\n${f.logTail}`).join("\n"));
    assert.match(r.slurm?.jobId ?? "", /^\d+$/);
    assert.match(r.slurm?.script ?? "", /#SBATCH --array=0-1/);
    assert.match(fs.readFileSync(path.join(r.arms[0].dir, "log.txt"), "utf8"), /slurm job \d+ task 0/);
    const again = await runSweep(ARMS, { cacheDir, executor: "slurm", ...quiet });
    assert.deepEqual(again.arms.map((a) => a.status), ["cached", "cached"]);
    assert.equal(again.slurm, undefined, "nothing was submitted");
    fs.rmSync(cacheDir, { recursive: true, force: true });
  });
});
