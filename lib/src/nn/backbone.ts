/**
 * What every backbone offers the methods: images in, one feature vector per image out.
 * Input: [N, H, W, C] float32, already normalised by the method's transform.
 */
import * as tf from "@tensorflow/tfjs-core";
import { Module } from "./module";

export abstract class Backbone extends Module {
  /** Feature dimension of `forward`'s output. */
  abstract readonly outputDim: number;
  /** [N, H, W, C] -> [N, outputDim] representation (pooled features / class token). */
  abstract forward(x: tf.Tensor4D): tf.Tensor2D;
}
