/**
 * MoCo's dictionary as a queue (He et al. 2020, sec. 3.2 and Algorithm 1, `enqueue(queue, k);
 * dequeue(queue)`): a ring buffer of K l2-normalised keys and a write pointer. Each step enqueues
 * the batch's keys over the oldest ones, for any K and batch size (a batch that runs past the end
 * wraps around; a batch larger than K leaves its last K keys).
 *
 * Call `enqueue` AFTER the loss has used the queue: enqueuing first would put every key in its own
 * query's negatives. The keys and the pointer are tf.Variables of this Module, so a method returns
 * the queue from `stateModules()` and checkpoints save and restore it exactly.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Module } from "../nn/module";
import { l2Normalize } from "../nn/fast-ops";
import { Rng } from "../random";

export interface KeyQueueOptions {
  /** Seed of the initial random keys (MoCo starts from normalised Gaussian noise). */
  seed?: number;
}

export class KeyQueue extends Module {
  readonly size: number;
  readonly dim: number;
  /** [K, D], every row unit-norm. */
  readonly keys: tf.Variable;
  /** [1] int32: the row the next key is written to. */
  readonly pointer: tf.Variable;

  constructor(size: number, dim: number, opts: KeyQueueOptions = {}) {
    super();
    if (!(Number.isInteger(size) && size >= 1)) throw new Error(`KeyQueue: size must be a positive integer, got ${size}`);
    if (!(Number.isInteger(dim) && dim >= 1)) throw new Error(`KeyQueue: dim must be a positive integer, got ${dim}`);
    this.size = size;
    this.dim = dim;
    const seed = new Rng(opts.seed ?? 0).seed();
    this.keys = this.addBuffer("keys", tf.tidy(() => l2Normalize(tf.randomNormal([size, dim], 0, 1, "float32", seed), 1)));
    this.pointer = this.addBuffer("pointer", tf.tensor1d([0], "int32"));
  }

  /** Where the next key goes. */
  position(): number {
    return this.pointer.dataSync()[0];
  }

  /**
   * queue[(ptr + i) mod K] = normalise(keys[i]) for i = 0..N-1 (later keys win when N > K), then
   * ptr = (ptr + N) mod K. One gather over [queue; keys]. No gradient flows into the queue.
   */
  enqueue(keys: tf.Tensor2D): void {
    if (keys.rank !== 2 || keys.shape[1] !== this.dim || keys.shape[0] < 1) {
      throw new Error(`KeyQueue.enqueue: expected keys [N, ${this.dim}] with N >= 1, got [${keys.shape}]`);
    }
    const n = keys.shape[0];
    const k = this.size;
    const ptr = this.position();
    const source = new Int32Array(k);
    for (let j = 0; j < k; j++) source[j] = j; // row j keeps its key...
    for (let i = Math.max(0, n - k); i < n; i++) source[(ptr + i) % k] = k + i; // ...unless a new key lands on it
    tf.tidy(() => {
      const table = tf.concat([this.keys, l2Normalize(keys, 1)], 0);
      this.keys.assign(tf.gather(table, tf.tensor1d(source, "int32")));
      this.pointer.assign(tf.tensor1d([(ptr + n) % k], "int32"));
    });
  }
}
