/**
 * A minimal module system over tf.Variable, in the spirit of torch.nn.Module:
 * a module owns named parameters (trainable) and buffers (non-trainable state such as
 * BatchNorm running statistics) and child modules. Names are dotted paths
 * ("blocks.0.attn.qkv.weight") so weights save, load and match optimiser state by name.
 *
 * `decay: false` marks parameters that weight decay must skip (biases, norm scales/shifts,
 * position embeddings, class tokens).
 */
import * as tf from "@tensorflow/tfjs-core";

export interface ParamInfo {
  name: string;
  variable: tf.Variable;
  decay: boolean;
}

export interface NamedTensorData {
  shape: number[];
  dtype: "float32" | "int32";
  data: Float32Array | Int32Array;
}

export type WeightMap = Record<string, NamedTensorData>;

let variableCounter = 0;

export abstract class Module {
  private readonly _params = new Map<string, { variable: tf.Variable; decay: boolean }>();
  private readonly _buffers = new Map<string, tf.Variable>();
  private readonly _children = new Map<string, Module>();
  /** Training mode: BatchNorm uses batch statistics, dropout is active. */
  training = true;

  protected addParam(name: string, init: tf.Tensor, opts: { decay?: boolean } = {}): tf.Variable {
    if (this._params.has(name)) throw new Error(`Module: parameter '${name}' already registered`);
    const variable = tf.variable(init, true, `sslkit_p${variableCounter++}_${name}`);
    init.dispose();
    this._params.set(name, { variable, decay: opts.decay ?? init.rank > 1 });
    return variable;
  }

  protected addBuffer(name: string, init: tf.Tensor): tf.Variable {
    if (this._buffers.has(name)) throw new Error(`Module: buffer '${name}' already registered`);
    const variable = tf.variable(init, false, `sslkit_b${variableCounter++}_${name}`);
    init.dispose();
    this._buffers.set(name, variable);
    return variable;
  }

  protected addChild<M extends Module>(name: string, child: M): M {
    if (this._children.has(name)) throw new Error(`Module: child '${name}' already registered`);
    this._children.set(name, child);
    return child;
  }

  /** All trainable parameters, depth first, with dotted names. */
  parameters(prefix = ""): ParamInfo[] {
    const out: ParamInfo[] = [];
    for (const [name, p] of this._params) out.push({ name: prefix + name, variable: p.variable, decay: p.decay });
    for (const [name, child] of this._children) out.push(...child.parameters(`${prefix}${name}.`));
    return out;
  }

  /** All non-trainable buffers, depth first, with dotted names. */
  buffers(prefix = ""): { name: string; variable: tf.Variable }[] {
    const out: { name: string; variable: tf.Variable }[] = [];
    for (const [name, b] of this._buffers) out.push({ name: prefix + name, variable: b });
    for (const [name, child] of this._children) out.push(...child.buffers(`${prefix}${name}.`));
    return out;
  }

  /** The trainable variables (what tf.variableGrads / optimisers take). */
  variables(): tf.Variable[] {
    return this.parameters().map((p) => p.variable);
  }

  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.variable.size, 0);
  }

  /** Set training / eval mode recursively. */
  train(mode = true): this {
    this.training = mode;
    for (const child of this._children.values()) child.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Make trainable or frozen (frozen variables get no gradient). */
  setTrainable(trainable: boolean): this {
    for (const p of this.parameters()) p.variable.trainable = trainable;
    return this;
  }

  /** Snapshot of parameters and buffers as plain typed arrays (for checkpoints). */
  async getWeights(): Promise<WeightMap> {
    const out: WeightMap = {};
    const all = [...this.parameters().map((p) => [p.name, p.variable] as const), ...this.buffers().map((b) => [b.name, b.variable] as const)];
    for (const [name, v] of all) {
      out[name] = { shape: v.shape.slice(), dtype: v.dtype as "float32" | "int32", data: (await v.data()) as Float32Array | Int32Array };
    }
    return out;
  }

  /** Load weights by name; every parameter and buffer must be present with the same shape. */
  setWeights(weights: WeightMap, opts: { strict?: boolean } = {}): void {
    const strict = opts.strict ?? true;
    const all = [...this.parameters().map((p) => [p.name, p.variable] as const), ...this.buffers().map((b) => [b.name, b.variable] as const)];
    for (const [name, v] of all) {
      const w = weights[name];
      if (!w) {
        if (strict) throw new Error(`setWeights: missing weight '${name}'`);
        continue;
      }
      if (w.shape.length !== v.shape.length || w.shape.some((d, i) => d !== v.shape[i])) {
        throw new Error(`setWeights: weight '${name}' has shape [${w.shape}] but the module expects [${v.shape}]`);
      }
      tf.tidy(() => v.assign(tf.tensor(w.data, w.shape, w.dtype)));
    }
  }

  /** Copy all parameters and buffers from a module of the same architecture (e.g. target = online). */
  copyFrom(other: Module): void {
    const src = new Map([...other.parameters().map((p) => [p.name, p.variable] as const), ...other.buffers().map((b) => [b.name, b.variable] as const)]);
    const dst = [...this.parameters().map((p) => [p.name, p.variable] as const), ...this.buffers().map((b) => [b.name, b.variable] as const)];
    for (const [name, v] of dst) {
      const s = src.get(name);
      if (!s) throw new Error(`copyFrom: source has no '${name}'`);
      v.assign(s);
    }
  }

  dispose(): void {
    for (const p of this._params.values()) p.variable.dispose();
    for (const b of this._buffers.values()) b.dispose();
    for (const c of this._children.values()) c.dispose();
  }
}
