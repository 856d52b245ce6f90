/**
 * Shared plumbing for batched augmentations: input checks, per-sample selection and
 * "apply this op to a subset of the batch" helpers. Every augmentation draws its per-sample
 * parameters in JavaScript from a seeded `Rng` and only then runs tensor ops, so the same seed
 * gives the same views on every backend.
 */
import * as tf from "@tensorflow/tfjs-core";

/** Throws a clear Error unless `images` is a float32 [N,H,W,C] batch with C = 1 or 3. */
export function assertImageBatch(fn: string, images: tf.Tensor): asserts images is tf.Tensor4D {
  if (!(images instanceof tf.Tensor)) throw new Error(`${fn}: images must be a tf.Tensor4D, got ${typeof images}`);
  if (images.rank !== 4) throw new Error(`${fn}: images must be [N,H,W,C], got shape [${images.shape}]`);
  if (images.dtype !== "float32") throw new Error(`${fn}: images must be float32 in [0,1], got dtype ${images.dtype}`);
  const c = images.shape[3];
  if (c !== 1 && c !== 3) throw new Error(`${fn}: images must have 1 or 3 channels, got ${c} (shape [${images.shape}])`);
  if (images.shape[1]! < 1 || images.shape[2]! < 1) throw new Error(`${fn}: images have an empty spatial size [${images.shape}]`);
}

/** Throws unless p is a probability. */
export function assertProbability(fn: string, name: string, p: number): void {
  if (!(typeof p === "number" && p >= 0 && p <= 1)) throw new Error(`${fn}: ${name} must be a probability in [0, 1], got ${p}`);
}

/** Throws unless `values` has one entry per sample; a single number is repeated. */
export function perSampleValues(fn: string, name: string, values: number | ArrayLike<number>, n: number): number[] {
  const out = typeof values === "number" ? new Array<number>(n).fill(values) : Array.from(values);
  if (out.length !== n) throw new Error(`${fn}: ${name} needs one value per sample (${n}), got ${out.length}`);
  for (const v of out) if (!Number.isFinite(v)) throw new Error(`${fn}: ${name} must be finite numbers, got ${v}`);
  return out;
}

/** Per-sample scalars as a [N,1,1,1] float32 tensor that broadcasts over H, W, C. */
export function perSampleTensor(values: ArrayLike<number>): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from(values), [values.length, 1, 1, 1]);
}

/** One Bernoulli(p) draw per sample, always consuming exactly n draws (keeps the Rng stream stable). */
export function drawFlags(rng: { next(): number }, n: number, p: number): boolean[] {
  const flags = new Array<boolean>(n);
  for (let i = 0; i < n; i++) flags[i] = rng.next() < p;
  return flags;
}

/**
 * Per-sample choice between two same-shaped batches: sample i comes from `ifTrue` where
 * flags[i], else from `ifFalse`. Computed as m*a + (1-m)*b with m in {0, 1}, which is exact for
 * finite values and much faster on wasm than a broadcast tf.where.
 */
export function selectSamples(flags: boolean[], ifTrue: tf.Tensor4D, ifFalse: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    if (flags.every((f) => f)) return tf.clone(ifTrue);
    if (!flags.some((f) => f)) return tf.clone(ifFalse);
    const m = perSampleTensor(flags.map((f) => (f ? 1 : 0)));
    const notM = perSampleTensor(flags.map((f) => (f ? 0 : 1)));
    return tf.add(tf.mul(m, ifTrue), tf.mul(notM, ifFalse)) as tf.Tensor4D;
  });
}

/** An op applied to some samples of a batch: `fn` receives those samples in `indices` order. */
export interface SampleGroup {
  indices: number[];
  fn: (subset: tf.Tensor4D, indices: number[]) => tf.Tensor4D;
}

/**
 * Applies each group's op to its own samples (groups must not overlap; samples in no group pass
 * through unchanged) and returns the batch in the original sample order. Only the selected samples
 * are computed on: gather each group, run its op, concat, and gather back with the inverse order.
 */
export function applyToGroups(images: tf.Tensor4D, groups: SampleGroup[]): tf.Tensor4D {
  return tf.tidy(() => {
    const n = images.shape[0];
    const active = groups.filter((g) => g.indices.length > 0);
    if (active.length === 0) return tf.clone(images);
    if (active.length === 1 && active[0].indices.length === n && active[0].indices.every((v, i) => v === i)) {
      return active[0].fn(images, active[0].indices);
    }
    const taken = new Uint8Array(n);
    const order: number[] = [];
    const parts: tf.Tensor4D[] = [];
    for (const g of active) {
      for (const i of g.indices) {
        if (!(Number.isInteger(i) && i >= 0 && i < n)) throw new Error(`applyToGroups: sample index ${i} is not in [0, ${n - 1}]`);
        if (taken[i]) throw new Error(`applyToGroups: sample ${i} is in more than one group`);
        taken[i] = 1;
      }
      const subset = tf.gather(images, tf.tensor1d(g.indices, "int32"), 0) as tf.Tensor4D;
      parts.push(g.fn(subset, g.indices));
      order.push(...g.indices);
    }
    const rest: number[] = [];
    for (let i = 0; i < n; i++) if (!taken[i]) rest.push(i);
    if (rest.length > 0) {
      parts.push(tf.gather(images, tf.tensor1d(rest, "int32"), 0) as tf.Tensor4D);
      order.push(...rest);
    }
    const inverse = new Int32Array(n);
    order.forEach((sample, pos) => (inverse[sample] = pos));
    return tf.gather(tf.concat(parts, 0), tf.tensor1d(inverse, "int32"), 0) as tf.Tensor4D;
  });
}

/** Indices i with flags[i] true. */
export function selectedIndices(flags: boolean[]): number[] {
  const out: number[] = [];
  flags.forEach((f, i) => f && out.push(i));
  return out;
}

/** Whether the active backend has a kernel registered under `kernelName`. */
export function backendHasKernel(kernelName: string): boolean {
  return tf.getKernel(kernelName, tf.getBackend()) != null;
}
