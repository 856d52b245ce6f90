/**
 * Optimisers over named parameters (`Module.parameters()`): AdamW, SGD with momentum and LARS.
 *
 * - Gradients come keyed by `variable.name`, as `tf.variableGrads` returns them.
 * - Weight decay skips parameters marked `decay: false` (biases, norms, tokens, position embeddings).
 * - The state (moments, momentum buffers, step count) is a set of NAMED tensors
 *   (`"<param>.exp_avg"`, `"<param>.momentum_buffer"`, `"step"`), so it checkpoints and
 *   restores exactly (`getState` / `setState`).
 * - Every update runs inside tf.tidy and writes in place with `assign`: no tensor leaks.
 * - Where tensors live in host memory (the wasm and cpu backends), the update runs as ONE fused
 *   loop per parameter over typed arrays (state kept on the host): ~14 elementwise tensor ops
 *   per parameter cost 5-10x more there. On other backends (tensorflow, GPU) it runs as tensor
 *   ops. Both paths compute the same update (tested against hand-computed steps).
 */
import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import type { ParamInfo, WeightMap } from "../nn/module";

/** What the trainer needs from an optimiser. */
export interface SslOptimizer {
  readonly name: string;
  /** Learning rate of the next update (the trainer sets it from the schedule every step). */
  lr: number;
  /** Number of updates applied so far. */
  readonly stepCount: number;
  /** One update; `grads` is keyed by `variable.name` (the map `tf.variableGrads` returns). Does not dispose `grads`. */
  applyGradients(grads: tf.NamedTensorMap): void;
  /** The optimiser state as named tensors (copies). */
  getState(): Promise<WeightMap>;
  /** Restore a state from `getState`; every name must match. */
  setState(state: WeightMap): void;
  dispose(): void;
}

let optimizerCounter = 0;

interface Slot {
  param: ParamInfo;
  /** Device state (tensor path). */
  buffers: tf.Variable[];
  /** Host state (fused path). */
  host: Float32Array[];
}

/** Where the update runs: "auto" = host for the wasm/cpu backends, device otherwise. */
export type OptimizerUpdateMode = "auto" | "host" | "device";

function resolveMode(mode: OptimizerUpdateMode | undefined): "host" | "device" {
  if (mode === "host" || mode === "device") return mode;
  const backend = tf.getBackend();
  return backend === "wasm" || backend === "cpu" ? "host" : "device";
}

function checkPositive(owner: string, what: string, value: number, allowZero = false): void {
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new Error(`${owner}: ${what} must be a ${allowZero ? "non-negative" : "positive"} number, got ${value}`);
  }
}

/** Shared bookkeeping: parameter slots with zero-initialised state buffers, named state. */
abstract class NamedStateOptimizer implements SslOptimizer {
  abstract readonly name: string;
  lr: number;
  protected t = 0;
  protected readonly slots: Slot[];
  /** "host": fused typed-array loops (wasm/cpu); "device": tensor ops. */
  readonly updateMode: "host" | "device";
  private readonly byVariable = new Map<string, Slot>();

  protected constructor(
    owner: string,
    params: ParamInfo[],
    lr: number,
    private readonly bufferNames: string[],
    mode?: OptimizerUpdateMode,
  ) {
    if (!Array.isArray(params) || params.length === 0) throw new Error(`${owner}: expected a non-empty ParamInfo[] (Module.parameters())`);
    checkPositive(owner, "lr", lr, true);
    this.lr = lr;
    this.updateMode = resolveMode(mode);
    const seen = new Set<string>();
    const id = optimizerCounter++;
    this.slots = params.map((param) => {
      if (seen.has(param.name)) throw new Error(`${owner}: duplicate parameter name '${param.name}'`);
      seen.add(param.name);
      if (this.updateMode === "host") return { param, buffers: [], host: bufferNames.map(() => new Float32Array(param.variable.size)) };
      const buffers = bufferNames.map((b) => tf.variable(tf.zerosLike(param.variable), false, `sslkit_opt${id}_${b}_${param.name}`));
      return { param, buffers, host: [] };
    });
    for (const slot of this.slots) this.byVariable.set(slot.param.variable.name, slot);
  }

  get stepCount(): number {
    return this.t;
  }

  applyGradients(grads: tf.NamedTensorMap): void {
    if (!Number.isFinite(this.lr)) throw new Error(`${this.name}: learning rate is not finite (${this.lr})`);
    for (const slot of this.slots) {
      const g = grads[slot.param.variable.name];
      if (g && (g.shape.length !== slot.param.variable.shape.length || g.shape.some((d, i) => d !== slot.param.variable.shape[i]))) {
        throw new Error(`${this.name}: gradient of '${slot.param.name}' has shape [${g.shape}], parameter is [${slot.param.variable.shape}]`);
      }
    }
    this.t += 1;
    for (const slot of this.slots) {
      const g = grads[slot.param.variable.name];
      if (!g) continue; // frozen or unused parameter
      const v = slot.param.variable;
      if (this.updateMode === "host" && tf.getBackend() === "wasm") {
        const updated = this.updateOnWasmHeap(slot, g, v);
        v.assign(updated);
        updated.dispose();
      } else if (this.updateMode === "host") {
        // copies: the cpu backend's dataSync returns its own storage
        const p = Float32Array.from(v.dataSync() as Float32Array);
        this.updateParamHost(slot, g.dataSync() as Float32Array, p);
        tf.tidy(() => v.assign(tf.tensor(p, v.shape, "float32")));
      } else {
        tf.tidy(() => this.updateParam(slot, g));
      }
    }
  }

  /**
   * The host update on the wasm backend, in place on the wasm heap: a fresh output buffer gets
   * the parameter (one heap-to-heap copy) and the loop reads the gradient where it lies, which
   * spares the three copies through JS arrays (dataSync twice, tf.tensor) of the generic path.
   */
  private updateOnWasmHeap(slot: Slot, g: tf.Tensor, v: tf.Variable): tf.Tensor {
    const wasm = tf.backend() as unknown as BackendWasm;
    const out = wasm.makeOutput(v.shape, "float32");
    // Views are taken after the allocation (a heap growth would detach earlier ones).
    const p = wasm.typedArrayFromHeap(out) as Float32Array;
    p.set(wasm.typedArrayFromHeap(v) as Float32Array);
    this.updateParamHost(slot, wasm.typedArrayFromHeap(g) as Float32Array, p);
    return tf.engine().makeTensorFromTensorInfo(out);
  }

  /** Update one parameter with tensor ops (runs inside tf.tidy). */
  protected abstract updateParam(slot: Slot, grad: tf.Tensor): void;

  /** Update one parameter in place on host arrays: `p` (a copy of the parameter) and `slot.host` state. */
  protected abstract updateParamHost(slot: Slot, grad: Float32Array, p: Float32Array): void;

  async getState(): Promise<WeightMap> {
    const out: WeightMap = { step: { shape: [], dtype: "int32", data: Int32Array.of(this.t) } };
    for (const slot of this.slots) {
      for (let b = 0; b < this.bufferNames.length; b++) {
        const data = this.updateMode === "host" ? slot.host[b].slice() : ((await slot.buffers[b].data()) as Float32Array);
        out[`${slot.param.name}.${this.bufferNames[b]}`] = { shape: slot.param.variable.shape.slice(), dtype: "float32", data };
      }
    }
    return out;
  }

  setState(state: WeightMap): void {
    const step = state["step"];
    if (!step || step.data.length !== 1) throw new Error(`${this.name}.setState: missing 'step'`);
    for (const slot of this.slots) {
      for (let b = 0; b < this.bufferNames.length; b++) {
        const key = `${slot.param.name}.${this.bufferNames[b]}`;
        const w = state[key];
        const shape = slot.param.variable.shape;
        if (!w) throw new Error(`${this.name}.setState: missing state '${key}'`);
        if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]) || w.data.length !== slot.param.variable.size) {
          throw new Error(`${this.name}.setState: state '${key}' has shape [${w.shape}], expected [${shape}]`);
        }
      }
    }
    const expected = 1 + this.slots.length * this.bufferNames.length;
    if (Object.keys(state).length !== expected) {
      throw new Error(`${this.name}.setState: expected ${expected} named tensors, got ${Object.keys(state).length} (different parameters?)`);
    }
    for (const slot of this.slots) {
      for (let b = 0; b < this.bufferNames.length; b++) {
        const w = state[`${slot.param.name}.${this.bufferNames[b]}`];
        if (this.updateMode === "host") slot.host[b].set(w.data);
        else tf.tidy(() => slot.buffers[b].assign(tf.tensor(w.data, w.shape, "float32")));
      }
    }
    this.t = step.data[0];
  }

  dispose(): void {
    for (const slot of this.slots) for (const b of slot.buffers) b.dispose();
  }
}

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  updateOn?: OptimizerUpdateMode;
}

/**
 * AdamW (Loshchilov & Hutter 2019), PyTorch semantics: decoupled decay p <- p (1 - lr wd) on
 * `decay` params, then p <- p - lr m_hat / (sqrt(v_hat) + eps) with bias-corrected moments.
 */
export class AdamW extends NamedStateOptimizer {
  readonly name = "AdamW";
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;

  constructor(params: ParamInfo[], opts: AdamWOptions) {
    super("AdamW", params, opts.lr, ["exp_avg", "exp_avg_sq"], opts.updateOn);
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    for (const [k, v] of [["beta1", this.beta1], ["beta2", this.beta2]] as const) {
      if (!(v >= 0 && v < 1)) throw new Error(`AdamW: ${k} must be in [0, 1), got ${v}`);
    }
    checkPositive("AdamW", "eps", this.eps);
    checkPositive("AdamW", "weightDecay", this.weightDecay, true);
  }

  protected updateParam(slot: Slot, g: tf.Tensor): void {
    const [m, v] = slot.buffers;
    const p = slot.param.variable;
    const mNew = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
    const vNew = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
    m.assign(mNew);
    v.assign(vNew);
    const biasCorrection1 = 1 - this.beta1 ** this.t;
    const biasCorrection2 = 1 - this.beta2 ** this.t;
    // denom = sqrt(v) / sqrt(1 - beta2^t) + eps ; step = lr / (1 - beta1^t)   (torch.optim.AdamW)
    const denom = tf.add(tf.div(tf.sqrt(vNew), Math.sqrt(biasCorrection2)), this.eps);
    const decayed = slot.param.decay && this.weightDecay > 0 ? tf.mul(p, 1 - this.lr * this.weightDecay) : p;
    p.assign(tf.sub(decayed, tf.mul(tf.div(mNew, denom), this.lr / biasCorrection1)));
  }

  protected updateParamHost(slot: Slot, g: Float32Array, p: Float32Array): void {
    const [m, v] = slot.host;
    const { beta1, beta2, eps } = this;
    const sqrtBc2 = Math.sqrt(1 - beta2 ** this.t);
    const stepSize = this.lr / (1 - beta1 ** this.t);
    const keep = slot.param.decay ? 1 - this.lr * this.weightDecay : 1;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i];
      const mi = (m[i] = beta1 * m[i] + (1 - beta1) * gi);
      const vi = (v[i] = beta2 * v[i] + (1 - beta2) * gi * gi);
      p[i] = p[i] * keep - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
    }
  }
}

export interface SgdMomentumOptions {
  lr: number;
  momentum?: number;
  nesterov?: boolean;
  /** L2 penalty added to the gradient (coupled, as torch.optim.SGD), on `decay` params only. */
  weightDecay?: number;
  updateOn?: OptimizerUpdateMode;
}

/**
 * SGD with (optionally Nesterov) momentum, PyTorch semantics:
 * g <- g + wd p ; b <- mu b + g ; p <- p - lr (nesterov ? g + mu b : b).
 */
export class SgdMomentum extends NamedStateOptimizer {
  readonly name = "SgdMomentum";
  momentum: number;
  nesterov: boolean;
  weightDecay: number;

  constructor(params: ParamInfo[], opts: SgdMomentumOptions) {
    super("SgdMomentum", params, opts.lr, ["momentum_buffer"], opts.updateOn);
    this.momentum = opts.momentum ?? 0.9;
    this.nesterov = opts.nesterov ?? false;
    this.weightDecay = opts.weightDecay ?? 0;
    if (!(this.momentum >= 0 && this.momentum < 1)) throw new Error(`SgdMomentum: momentum must be in [0, 1), got ${this.momentum}`);
    checkPositive("SgdMomentum", "weightDecay", this.weightDecay, true);
  }

  protected updateParam(slot: Slot, g: tf.Tensor): void {
    const [buf] = slot.buffers;
    const p = slot.param.variable;
    const grad = slot.param.decay && this.weightDecay > 0 ? tf.add(g, tf.mul(p, this.weightDecay)) : g;
    const bufNew = tf.add(tf.mul(buf, this.momentum), grad);
    buf.assign(bufNew);
    const update = this.nesterov ? tf.add(grad, tf.mul(bufNew, this.momentum)) : bufNew;
    p.assign(tf.sub(p, tf.mul(update, this.lr)));
  }

  protected updateParamHost(slot: Slot, g: Float32Array, p: Float32Array): void {
    const [buf] = slot.host;
    const { momentum: mu, lr, nesterov } = this;
    const wd = slot.param.decay ? this.weightDecay : 0;
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] + wd * p[i];
      const bi = (buf[i] = mu * buf[i] + gi);
      p[i] -= lr * (nesterov ? gi + mu * bi : bi);
    }
  }
}

export interface LarsOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  /** Trust coefficient eta (SimCLR / BYOL use 0.001). */
  trustCoefficient?: number;
  /**
   * Parameters excluded from BOTH weight decay and trust-ratio adaptation. Default: those with
   * `decay: false` (biases and norm parameters), as SimCLR / BYOL / Barlow Twins do.
   */
  exclude?: (param: ParamInfo) => boolean;
  updateOn?: OptimizerUpdateMode;
}

/**
 * LARS (You et al. 2017) as used by SimCLR/BYOL (the Barlow Twins reference code):
 *   g <- g + wd p ;  g <- g * eta ||p|| / ||g||  (1 when either norm is 0) ;  b <- mu b + g ;  p <- p - lr b
 * where weight decay and the trust ratio apply only to non-excluded parameters.
 */
export class Lars extends NamedStateOptimizer {
  readonly name = "Lars";
  momentum: number;
  weightDecay: number;
  trustCoefficient: number;
  private readonly exclude: (param: ParamInfo) => boolean;

  constructor(params: ParamInfo[], opts: LarsOptions) {
    super("Lars", params, opts.lr, ["momentum_buffer"], opts.updateOn);
    this.momentum = opts.momentum ?? 0.9;
    this.weightDecay = opts.weightDecay ?? 1e-6;
    this.trustCoefficient = opts.trustCoefficient ?? 0.001;
    this.exclude = opts.exclude ?? ((p) => !p.decay);
    if (!(this.momentum >= 0 && this.momentum < 1)) throw new Error(`Lars: momentum must be in [0, 1), got ${this.momentum}`);
    checkPositive("Lars", "weightDecay", this.weightDecay, true);
    checkPositive("Lars", "trustCoefficient", this.trustCoefficient);
  }

  protected updateParam(slot: Slot, g: tf.Tensor): void {
    const [buf] = slot.buffers;
    const p = slot.param.variable;
    let grad = g;
    if (!this.exclude(slot.param)) {
      if (this.weightDecay > 0) grad = tf.add(grad, tf.mul(p, this.weightDecay));
      const paramNorm = tf.norm(p);
      const gradNorm = tf.norm(grad);
      // trust ratio eta ||p|| / ||g||, or 1 when either norm is zero (LARS eq. 6)
      const bothPositive = tf.logicalAnd(tf.greater(paramNorm, 0), tf.greater(gradNorm, 0));
      const ratio = tf.where(bothPositive, tf.div(tf.mul(paramNorm, this.trustCoefficient), tf.maximum(gradNorm, 1e-30)), tf.onesLike(paramNorm));
      grad = tf.mul(grad, ratio);
    }
    const bufNew = tf.add(tf.mul(buf, this.momentum), grad);
    buf.assign(bufNew);
    p.assign(tf.sub(p, tf.mul(bufNew, this.lr)));
  }

  protected updateParamHost(slot: Slot, g: Float32Array, p: Float32Array): void {
    const [buf] = slot.host;
    const adapt = !this.exclude(slot.param);
    const wd = adapt ? this.weightDecay : 0;
    let ratio = 1;
    if (adapt) {
      let pSq = 0;
      let gSq = 0;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i] + wd * p[i];
        pSq += p[i] * p[i];
        gSq += gi * gi;
      }
      if (pSq > 0 && gSq > 0) ratio = (this.trustCoefficient * Math.sqrt(pSq)) / Math.sqrt(gSq);
    }
    const { momentum: mu, lr } = this;
    for (let i = 0; i < p.length; i++) {
      const bi = (buf[i] = mu * buf[i] + (g[i] + wd * p[i]) * ratio);
      p[i] -= lr * bi;
    }
  }
}

/**
 * Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): every gradient is scaled by
 * min(1, maxNorm / (||g||_global + 1e-6)). Returns NEW tensors and the global norm before
 * clipping; the caller disposes both the input and the output maps.
 */
export function clipGradientsByGlobalNorm(grads: tf.NamedTensorMap, maxNorm: number): { grads: tf.NamedTensorMap; globalNorm: tf.Scalar } {
  checkPositive("clipGradientsByGlobalNorm", "maxNorm", maxNorm);
  const names = Object.keys(grads);
  if (names.length === 0) throw new Error("clipGradientsByGlobalNorm: no gradients");
  return tf.tidy(() => {
    const globalNorm = tf.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n]))))) as tf.Scalar;
    const scale = tf.minimum(1, tf.div(maxNorm, tf.add(globalNorm, 1e-6)));
    const clipped: tf.NamedTensorMap = {};
    for (const n of names) clipped[n] = tf.mul(grads[n], scale);
    return { grads: clipped, globalNorm };
  });
}

export type OptimizerName = "adamw" | "sgd" | "lars";

export interface OptimizerSpec {
  name: OptimizerName;
  lr: number;
  weightDecay?: number;
  momentum?: number;
  nesterov?: boolean;
  beta1?: number;
  beta2?: number;
  trustCoefficient?: number;
  updateOn?: OptimizerUpdateMode;
}

/** Build an optimiser by name ("adamw" | "sgd" | "lars"). */
export function createOptimizer(params: ParamInfo[], spec: OptimizerSpec): SslOptimizer {
  switch (spec.name) {
    case "adamw":
      return new AdamW(params, { lr: spec.lr, weightDecay: spec.weightDecay, beta1: spec.beta1, beta2: spec.beta2, updateOn: spec.updateOn });
    case "sgd":
      return new SgdMomentum(params, { lr: spec.lr, weightDecay: spec.weightDecay, momentum: spec.momentum, nesterov: spec.nesterov, updateOn: spec.updateOn });
    case "lars":
      return new Lars(params, { lr: spec.lr, weightDecay: spec.weightDecay, momentum: spec.momentum, trustCoefficient: spec.trustCoefficient, updateOn: spec.updateOn });
    default:
      throw new Error(`createOptimizer: unknown optimiser '${(spec as { name: string }).name}' (expected adamw, sgd or lars)`);
  }
}
