/**
 * Exponential moving average of a module's weights into a target copy (MoCo's key encoder,
 * BYOL's target network, DINO's teacher): target <- m target + (1 - m) online, over every
 * parameter AND buffer, matched by dotted name.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Module } from "../nn/module";

function namedState(m: Module): Map<string, tf.Variable> {
  return new Map([...m.parameters().map((p) => [p.name, p.variable] as const), ...m.buffers().map((b) => [b.name, b.variable] as const)]);
}

export class EmaUpdater {
  private readonly pairs: { name: string; online: tf.Variable; target: tf.Variable }[] = [];

  /** Checks that `online` and `target` have the same names and shapes. */
  constructor(
    readonly online: Module,
    readonly target: Module,
  ) {
    const src = namedState(online);
    const dst = namedState(target);
    if (src.size !== dst.size) throw new Error(`EmaUpdater: online has ${src.size} tensors, target has ${dst.size}`);
    for (const [name, t] of dst) {
      const o = src.get(name);
      if (!o) throw new Error(`EmaUpdater: online module has no '${name}'`);
      if (o.shape.length !== t.shape.length || o.shape.some((d, i) => d !== t.shape[i])) {
        throw new Error(`EmaUpdater: '${name}' is [${o.shape}] online but [${t.shape}] in the target`);
      }
      this.pairs.push({ name, online: o, target: t });
    }
  }

  /** target <- m target + (1 - m) online (float tensors); integer buffers are copied. */
  update(momentum: number): void {
    if (!(momentum >= 0 && momentum <= 1)) throw new Error(`EmaUpdater.update: momentum must be in [0, 1], got ${momentum}`);
    tf.tidy(() => {
      for (const { online, target } of this.pairs) {
        if (target.dtype !== "float32") target.assign(online);
        else target.assign(tf.add(tf.mul(target, momentum), tf.mul(online, 1 - momentum)));
      }
    });
  }

  /** target <- online (the initialisation of every momentum method). */
  copy(): void {
    tf.tidy(() => {
      for (const { online, target } of this.pairs) target.assign(online);
    });
  }
}
