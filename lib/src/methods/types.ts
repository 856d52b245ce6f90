/**
 * The contract between a self-supervised method and the trainer. A method is a short
 * composition of a backbone, heads, a loss and an augmentation recipe; the trainer owns the
 * optimiser, schedules, checkpoints, logging and evaluation.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { Backbone } from "../nn/backbone";
import type { Module } from "../nn/module";
import type { Rng } from "../random";

export interface StepContext {
  /** 0-based global optimisation step. */
  step: number;
  totalSteps: number;
  epoch: number;
  /** Seeded generator for this step's randomness (views, masks, mixing). */
  rng: Rng;
}

export interface StepOutput {
  loss: tf.Scalar;
  /** Extra scalars to log (e.g. contrastive accuracy). */
  metrics?: Record<string, tf.Scalar>;
  /** [N, D] embeddings whose collapse is monitored (e.g. the projection of view 1). */
  embeddings?: tf.Tensor2D;
}

export interface SSLMethod {
  readonly name: string;
  /** The encoder whose features are evaluated (k-NN, linear probe). */
  readonly backbone: Backbone;
  /** Everything the optimiser updates (backbone + heads); its parameters are trained. */
  readonly trainable: Module;
  /** Build the training views from a batch of images [N,H,W,C] in [0,1] (no gradient). */
  views(images: tf.Tensor4D, ctx: StepContext): tf.Tensor4D[];
  /** The loss on the views; called inside tf.variableGrads. */
  step(views: tf.Tensor4D[], ctx: StepContext): StepOutput;
  /** After the optimiser update: EMA targets, queues, centers. */
  afterStep?(ctx: StepContext): void;
  /** Extra state to checkpoint (target networks, queues, centers), by name. */
  stateModules?(): Record<string, Module>;
  dispose(): void;
}
