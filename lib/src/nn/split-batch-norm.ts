/**
 * Shuffling BN on one machine (He et al. 2020, sec. 3.3), as the official MoCo CIFAR-10 demo does it:
 *
 *   - SplitBatchNorm normalises each of G equal groups of the batch with that group's own
 *     statistics, as G devices with their own BN would (the demo's `SplitBatchNorm`, 8 splits);
 *   - the key batch is shuffled across the groups before the key encoder and put back after, so a
 *     query and its key are normalised with statistics of different sets of images and the model
 *     cannot "cheat" the pretext task through the batch statistics.
 *
 * `groupShuffle` is a shuffle stratified over the query groups (a random permutation in which every
 * key group draws evenly from all query groups): a key's group shares at most ceil(s/G) images with
 * its query's group (s = N/G images a group); with s <= G only the image itself. A plain random
 * permutation (the demo's) gives that overlap on average, this one on every batch.
 *
 * Speed: with sslkit-native, `groupBatchNorm` runs the native batch-norm kernels on each group's
 * rows in place (sub-arrays of the wasm heap: no copies). Elsewhere it splits the batch, normalises
 * each part and concatenates (copies, slow on wasm: ~5x a plain BatchNorm).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { loadNativeKernels, nativeKernelsActive } from "../backend/native-kernels";
import type { Rng } from "../random";
import * as fastOps from "./fast-ops";
import { BatchNorm, BatchNormOptions } from "./layers";

export interface SplitBatchNormOptions extends BatchNormOptions {
  /** Number of groups G of the batch (the demo's bn_splits, 8); the batch size must divide by it. */
  groups: number;
}

/**
 * BatchNorm with per-group batch statistics in training mode. Running statistics are updated with
 * the mean over groups of each group's mean and unbiased variance (the demo averages its G running
 * copies, which is the same average); eval mode is plain BatchNorm. Same parameters and buffers as
 * BatchNorm, so weights load into either.
 */
export class SplitBatchNorm extends BatchNorm {
  readonly groups: number;

  constructor(numFeatures: number, opts: SplitBatchNormOptions) {
    super(numFeatures, opts);
    if (!(Number.isInteger(opts?.groups) && opts.groups >= 1)) throw new Error(`SplitBatchNorm: groups must be a positive integer, got ${opts?.groups}`);
    this.groups = opts.groups;
  }

  override forward<T extends tf.Tensor>(x: T): T {
    if (!this.training || this.groups === 1) return super.forward(x);
    const c = this.numFeatures;
    const g = this.groups;
    if ((x.rank !== 2 && x.rank !== 4) || x.shape[x.rank - 1] !== c) throw new Error(`SplitBatchNorm: expected input [N, ${c}] or [N, H, W, ${c}], got [${x.shape}]`);
    if (x.shape[0] % g !== 0) throw new Error(`SplitBatchNorm: batch ${x.shape[0]} is not divisible by ${g} groups`);
    const rowsPerGroup = x.size / c / g;
    if (rowsPerGroup < 2) throw new Error(`SplitBatchNorm: each of the ${g} groups needs more than 1 value per channel, got input [${x.shape}]`);
    const { y, mean, variance } = groupBatchNorm(tf.reshape(x, [-1, c]) as tf.Tensor2D, this.weight as tf.Tensor1D | null, this.bias as tf.Tensor1D | null, this.eps, g);
    tf.tidy(() => {
      // running = (1 - m) running + m * (group average of the batch mean / unbiased variance)
      const mom = this.momentum;
      const unbiased = tf.mul(tf.mean(variance, 0), rowsPerGroup / (rowsPerGroup - 1));
      this.runningMean.assign(tf.add(tf.mul(this.runningMean, 1 - mom), tf.mul(tf.mean(mean, 0), mom)));
      this.runningVar.assign(tf.add(tf.mul(this.runningVar, 1 - mom), tf.mul(unbiased, mom)));
    });
    tf.dispose([mean, variance]);
    return tf.reshape(y, x.shape) as T;
  }
}

/**
 * Training-mode batch norm of x [M, C] over each of `groups` equal, consecutive blocks of rows:
 * y and the per-group batch mean and biased variance [groups, C] (no gradient; the caller disposes
 * them). Gradients flow to x, gamma and beta.
 */
export function groupBatchNorm(x: tf.Tensor2D, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, eps: number, groups: number): { y: tf.Tensor2D; mean: tf.Tensor2D; variance: tf.Tensor2D } {
  if (x.rank !== 2 || x.shape[0] % groups !== 0) throw new Error(`groupBatchNorm: x must be [M, C] with M divisible by ${groups}, got [${x.shape}]`);
  if ((gamma === null) !== (beta === null)) throw new Error("groupBatchNorm: gamma and beta go together");
  return nativeKernelsActive() && registerGroupKernels() ? groupBatchNormNative(x, gamma, beta, eps, groups) : groupBatchNormSplit(x, gamma, beta, eps, groups);
}

/** Portable path: split the rows, fastOps.batchNormTrain on each part, concatenate. */
function groupBatchNormSplit(x: tf.Tensor2D, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, eps: number, groups: number): { y: tf.Tensor2D; mean: tf.Tensor2D; variance: tf.Tensor2D } {
  const outs: tf.Tensor2D[] = [];
  const means: tf.Tensor1D[] = [];
  const vars: tf.Tensor1D[] = [];
  for (const part of tf.split(x, groups, 0)) {
    const r = fastOps.batchNormTrain(part as tf.Tensor2D, gamma, beta, eps);
    outs.push(r.y);
    means.push(r.mean);
    vars.push(r.variance);
  }
  const mean = tf.stack(means) as tf.Tensor2D;
  const variance = tf.stack(vars) as tf.Tensor2D;
  tf.dispose([...means, ...vars]);
  return { y: tf.concat(outs, 0) as tf.Tensor2D, mean, variance };
}

const GROUP_BN_FORWARD = "SslkitGroupBatchNormForward";
const GROUP_BN_BACKWARD = "SslkitGroupBatchNormBackward";

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** Registers the two wasm kernels over sslkit-native (once); false when the addon is unavailable. */
function registerGroupKernels(): boolean {
  if (tf.getKernel(GROUP_BN_FORWARD, "wasm")) return true;
  const native = loadNativeKernels().kernels;
  if (!native) return false;
  const heap = (b: BackendWasm, t: tf.TensorInfo) => b.typedArrayFromHeap(t) as Float32Array;
  // forward: inputs x [M, C], gamma?, beta?; attrs eps, groups -> y [M, C], mean [G, C], variance [G, C]
  const forward = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
    const { x, gamma, beta } = inputs as Record<string, tf.TensorInfo | undefined>;
    const wasm = backend as BackendWasm;
    const [m, c] = x!.shape;
    const g = attrs!.groups as number;
    const rows = (m / g) * c;
    const outs = [wasm.makeOutput([m, c], "float32"), wasm.makeOutput([g, c], "float32"), wasm.makeOutput([g, c], "float32")];
    // views after every allocation (a growing heap detaches older views)
    const [xv, yv, mv, vv] = [heap(wasm, x!), ...outs.map((o) => heap(wasm, o))];
    const [gv, bv] = [gamma ? heap(wasm, gamma) : null, beta ? heap(wasm, beta) : null];
    for (let i = 0; i < g; i++) {
      native.batchNormForward(xv.subarray(i * rows, (i + 1) * rows), gv, bv, yv.subarray(i * rows, (i + 1) * rows), mv.subarray(i * c, (i + 1) * c), vv.subarray(i * c, (i + 1) * c), rows / c, c, attrs!.eps as number);
    }
    return outs;
  };
  // backward: inputs x, dy [M, C], mean, variance [G, C], gamma?; attrs eps, groups -> dx [M, C], dgamma [C], dbeta [C]
  const backward = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
    const { x, dy, mean, variance, gamma } = inputs as Record<string, tf.TensorInfo | undefined>;
    const wasm = backend as BackendWasm;
    const [m, c] = x!.shape;
    const g = attrs!.groups as number;
    const rows = (m / g) * c;
    const outs = [wasm.makeOutput([m, c], "float32"), wasm.makeOutput([c], "float32"), wasm.makeOutput([c], "float32")];
    const [xv, dyv, mv, vv, dxv, dgv, dbv] = [x!, dy!, mean!, variance!, ...outs].map((t) => heap(wasm, t));
    const gv = gamma ? heap(wasm, gamma) : null;
    const dg = new Float32Array(c);
    const db = new Float32Array(c);
    dgv.fill(0);
    dbv.fill(0);
    for (let i = 0; i < g; i++) {
      const part = (v: Float32Array) => v.subarray(i * rows, (i + 1) * rows);
      native.batchNormBackward(part(xv), part(dyv), mv.subarray(i * c, (i + 1) * c), vv.subarray(i * c, (i + 1) * c), gv, part(dxv), dg, db, rows / c, c, attrs!.eps as number);
      for (let j = 0; j < c; j++) {
        dgv[j] += dg[j];
        dbv[j] += db[j];
      }
    }
    return outs;
  };
  tf.registerKernel({ kernelName: GROUP_BN_FORWARD, backendName: "wasm", kernelFunc: forward as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: GROUP_BN_BACKWARD, backendName: "wasm", kernelFunc: backward as unknown as tf.KernelFunc });
  return true;
}

/** The native path as one op whose gradient is one native pass a group. */
function groupBatchNormNative(x: tf.Tensor2D, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, eps: number, groups: number): { y: tf.Tensor2D; mean: tf.Tensor2D; variance: tf.Tensor2D } {
  const engine = tf.engine();
  let stats: tf.Tensor[] = [];
  const attrs = { eps, groups };
  const op = tf.customGrad(((...args: unknown[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const inputs: Record<string, tf.Tensor> = gamma && beta ? { x: args[0] as tf.Tensor, gamma: args[1] as tf.Tensor, beta: args[2] as tf.Tensor } : { x: args[0] as tf.Tensor };
    const [y, mean, variance] = engine.runKernel(GROUP_BN_FORWARD, inputs, attrs) as tf.Tensor[];
    save(gamma ? [inputs.x, mean, variance, inputs.gamma] : [inputs.x, mean, variance]);
    stats = [tf.keep(mean), tf.keep(variance)]; // escape the op's scope; the caller disposes them
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [sx, sm, sv, sg]: tf.Tensor[]) => {
        const [dx, dgamma, dbeta] = engine.runKernel(GROUP_BN_BACKWARD, { x: sx, dy, mean: sm, variance: sv, ...(sg ? { gamma: sg } : {}) }, attrs) as tf.Tensor[];
        return gamma ? [dx, dgamma, dbeta] : (tf.dispose([dgamma, dbeta]), [dx]);
      },
    };
  }) as never) as (...t: tf.Tensor[]) => tf.Tensor;
  const y = (gamma && beta ? op(x, gamma, beta) : op(x)) as tf.Tensor2D;
  return { y, mean: stats[0] as tf.Tensor2D, variance: stats[1] as tf.Tensor2D };
}

/** A batch shuffle and its inverse: shuffled = x[perm], x = shuffled[inverse]. */
export interface BatchShuffle {
  perm: Int32Array;
  inverse: Int32Array;
}

/**
 * A shuffle of a batch of n images over `groups` groups of s = n/groups, stratified: the images of
 * each group in random order, the groups in random order, read out one image of each group in turn.
 * Every run of s consecutive positions (a group after the shuffle) then holds at most ceil(s/G)
 * images of any one original group.
 */
export function groupShuffle(n: number, groups: number, rng: Rng): BatchShuffle {
  if (!(Number.isInteger(groups) && groups >= 1)) throw new Error(`groupShuffle: groups must be a positive integer, got ${groups}`);
  if (!(Number.isInteger(n) && n >= 1 && n % groups === 0)) throw new Error(`groupShuffle: batch ${n} is not divisible by ${groups} groups`);
  const s = n / groups;
  const order = rng.permutation(groups);
  const members = Array.from({ length: groups }, (_, g) => rng.permutation(s).map((j) => g * s + j));
  const perm = new Int32Array(n);
  for (let c = 0; c < s; c++) for (let t = 0; t < groups; t++) perm[c * groups + t] = members[order[t]][c];
  const inverse = new Int32Array(n);
  for (let p = 0; p < n; p++) inverse[perm[p]] = p;
  return { perm, inverse };
}

/** x[perm] along the batch axis; its gradient is dy[inverse] (a gather, not a segment sum). */
export function permuteRows<T extends tf.Tensor>(x: T, shuffle: BatchShuffle): T {
  if (x.shape[0] !== shuffle.perm.length) throw new Error(`permuteRows: batch ${x.shape[0]} but a shuffle of ${shuffle.perm.length}`);
  const f = tf.customGrad(((t: tf.Tensor) => ({
    value: tf.gather(t, tf.tensor1d(shuffle.perm, "int32")),
    gradFunc: (dy: tf.Tensor) => tf.gather(dy, tf.tensor1d(shuffle.inverse, "int32")),
  })) as never) as (t: tf.Tensor) => tf.Tensor;
  return f(x) as T;
}
