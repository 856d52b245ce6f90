/**
 * The SDMP loss (Ren et al. 2022, "A Simple Data Mixing Prior for Improving Self-Supervised
 * Learning", the pseudo-code of the official repository), for a batch mixed with its reverse:
 *
 *   logits1 = n(q_mix) n(k_source)^T / t     label1 = lam I + (1 - lam) I.flip           (source loss)
 *   lam_c   = min(lam, 1 - lam.flip) + min(1 - lam, lam.flip)
 *   logits2 = n(q_mix) n(k_mix)^T / t        label2 = (I + lam_c I.flip) / (1 + lam_c)    (mix loss)
 *   loss    = CE(logits1, label1) + CE(logits2, label2)
 *
 * n() is l2 normalisation, CE the soft-label cross-entropy -sum_j y_ij log softmax(logits_i)_j
 * averaged over the N rows, I.flip the identity with its rows reversed (row i has its 1 at column
 * N-1-i, the partner) and lam.flip the lambdas reversed. lam_c is the share of content the two
 * mixed images i and N-1-i have in common: both contain x_i and x_{N-1-i}.
 */
import * as tf from "@tensorflow/tfjs-core";
import { l2Normalize, matMul } from "../nn/fast-ops";
import { stopGradient } from "../nn/no-grad";

function lamTensor(fn: string, lam: ArrayLike<number> | tf.Tensor1D, n: number): tf.Tensor1D {
  if (lam instanceof tf.Tensor) {
    if (lam.rank !== 1 || lam.shape[0] !== n) throw new Error(`${fn}: lam must be [${n}], got [${lam.shape}]`);
    return tf.cast(lam, "float32") as tf.Tensor1D;
  }
  const v = Array.from(lam);
  if (v.length !== n) throw new Error(`${fn}: lam needs one value per row (${n}), got ${v.length}`);
  for (const x of v) if (!(x >= 0 && x <= 1)) throw new Error(`${fn}: lam values must be in [0, 1], got ${x}`);
  return tf.tensor1d(v, "float32");
}

/** The identity with its rows reversed: row i has a 1 at column N-1-i. */
export function flippedIdentity(n: number): tf.Tensor2D {
  return tf.reverse(tf.eye(n), 0) as tf.Tensor2D;
}

/** lam_c = min(lam, 1 - lam.flip) + min(1 - lam, lam.flip): the content mixed images i and N-1-i share. */
export function sdmpCommon(lam: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const flip = tf.reverse(lam, 0);
    return tf.add(tf.minimum(lam, tf.sub(1, flip)), tf.minimum(tf.sub(1, lam), flip)) as tf.Tensor1D;
  });
}

/**
 * The two soft-label matrices [N, N] of SDMP: `source` = lam I + (1 - lam) I.flip (a mixed image
 * against the sources) and `mix` = (I + lam_c I.flip) / (1 + lam_c) (against the other mixed view).
 * `naive: true` gives the plain-mixing baseline's one-hot instance labels I for both.
 */
export function sdmpTargets(lam: ArrayLike<number> | tf.Tensor1D, opts: { naive?: boolean } = {}): { source: tf.Tensor2D; mix: tf.Tensor2D } {
  const n = lam instanceof tf.Tensor ? lam.shape[0] : lam.length;
  return tf.tidy(() => {
    const l = lamTensor("sdmpTargets", lam, n);
    const eye = tf.eye(n);
    if (opts.naive) return { source: eye as tf.Tensor2D, mix: tf.clone(eye) as tf.Tensor2D };
    const flipEye = flippedIdentity(n);
    const col = (t: tf.Tensor) => tf.reshape(t, [n, 1]);
    const source = tf.add(tf.mul(eye, col(l)), tf.mul(flipEye, col(tf.sub(1, l)))) as tf.Tensor2D;
    const c = col(sdmpCommon(l));
    const mix = tf.div(tf.add(eye, tf.mul(flipEye, c)), tf.add(1, c)) as tf.Tensor2D;
    return { source, mix };
  });
}

/** Soft-label cross-entropy -1/N sum_i sum_j y_ij log softmax(logits_i)_j. */
export function softCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Scalar {
  if (logits.rank !== 2 || targets.rank !== 2 || logits.shape[0] !== targets.shape[0] || logits.shape[1] !== targets.shape[1]) {
    throw new Error(`softCrossEntropy: logits [${logits.shape}] and targets [${targets.shape}] must be the same [N, K]`);
  }
  return tf.tidy(() => tf.div(tf.neg(tf.sum(tf.mul(targets, tf.logSoftmax(logits, 1)))), logits.shape[0]) as tf.Scalar);
}

function checkInputs(fn: string, qMix: tf.Tensor, kSource: tf.Tensor, kMix: tf.Tensor, temperature: number): void {
  for (const [name, t] of [["qMix", qMix], ["kSource", kSource], ["kMix", kMix]] as const) {
    if (t.rank !== 2 || t.shape[0] !== qMix.shape[0] || t.shape[1] !== qMix.shape[1]) {
      throw new Error(`${fn}: qMix, kSource and kMix must all be [N, D]; ${name} is [${t.shape}], qMix [${qMix.shape}]`);
    }
  }
  if (qMix.shape[0] < 1) throw new Error(`${fn}: empty batch`);
  if (!(Number.isFinite(temperature) && temperature > 0)) throw new Error(`${fn}: temperature must be a positive number, got ${temperature}`);
}

/** The two terms of the SDMP loss: `source` = CE(logits1, label1), `mix` = CE(logits2, label2). */
export function sdmpLossTerms(
  qMix: tf.Tensor2D,
  kSource: tf.Tensor2D,
  kMix: tf.Tensor2D,
  lam: ArrayLike<number> | tf.Tensor1D,
  temperature: number,
  opts: { naive?: boolean } = {},
): { source: tf.Scalar; mix: tf.Scalar } {
  checkInputs("sdmpLoss", qMix, kSource, kMix, temperature);
  const n = lam instanceof tf.Tensor ? lam.shape[0] : lam.length;
  if (n !== qMix.shape[0]) throw new Error(`sdmpLoss: lam needs one value per row (${qMix.shape[0]}), got ${n}`);
  return tf.tidy(() => {
    const { source: label1, mix: label2 } = sdmpTargets(lam, opts);
    const q = l2Normalize(qMix, 1);
    const logits = (k: tf.Tensor2D) => tf.div(matMul(q, tf.transpose(l2Normalize(k, 1), [1, 0])), temperature) as tf.Tensor2D;
    return { source: softCrossEntropy(logits(kSource), label1), mix: softCrossEntropy(logits(kMix), label2) };
  });
}

/**
 * SDMP's loss1 + loss2 (see the file comment). qMix: [N, D] queries of the mixed images;
 * kSource: [N, D] keys of the (other view of the) source images; kMix: [N, D] keys of the other
 * mixed view (mixed with the same lambdas); lam: [N] realised mixing coefficients.
 */
export function sdmpLoss(
  qMix: tf.Tensor2D,
  kSource: tf.Tensor2D,
  kMix: tf.Tensor2D,
  lam: ArrayLike<number> | tf.Tensor1D,
  temperature: number,
  opts: { naive?: boolean } = {},
): tf.Scalar {
  return tf.tidy(() => {
    const { source, mix } = sdmpLossTerms(qMix, kSource, kMix, lam, temperature, opts);
    return tf.add(source, mix) as tf.Scalar;
  });
}

/**
 * SDMP's two extra terms for DINO (Ren et al. 2022, Sec. 3.3, "knowledge distillation"), with
 * P_t(x) = softmax((g_t(x) - c) / tau_t) (centred, sharpened, no gradient) and
 * P_s(x) = softmax(g_s(x) / tau_s), the student seeing the mixed view x~_i:
 *
 *   L_source = H( lam_i P_t(x'_i) + (1 - lam_i) P_t(x'_{N-1-i}),                      P_s(x~_i) )
 *   L_mix    = H( (P_t(x~'_i) + lam_c,i P_t(x~'_{N-1-i})) / (1 + lam_c,i),             P_s(x~_i) )
 *
 * x' is the other (unmixed) global view of the sources and x~' that view mixed with the same
 * lambdas. The soft targets are the rows of SDMP's label matrices applied to the teacher's
 * distributions (label1 P_t(x') and label2 P_t(x~')), so the targets mix the two sources'
 * teacher distributions in the proportions the contrastive form mixes their one-hot instance
 * labels. H(p, q) = -sum_k p_k log q_k, averaged over the batch. `naive: true` keeps one-hot
 * labels: the targets are P_t(x'_i) and P_t(x~'_i) (plain mixing).
 */
export function sdmpDistillationTerms(
  studentMix: tf.Tensor2D,
  teacherSource: tf.Tensor2D,
  teacherMix: tf.Tensor2D,
  center: tf.Tensor,
  lam: ArrayLike<number> | tf.Tensor1D,
  studentTemp: number,
  teacherTemp: number,
  opts: { naive?: boolean } = {},
): { source: tf.Scalar; mix: tf.Scalar } {
  checkInputs("sdmpDistillationTerms", studentMix, teacherSource, teacherMix, 1);
  const [n, k] = studentMix.shape;
  if (center.size !== k) throw new Error(`sdmpDistillationTerms: center must have ${k} values, got [${center.shape}]`);
  for (const [what, t] of [["studentTemp", studentTemp], ["teacherTemp", teacherTemp]] as const) {
    if (!(Number.isFinite(t) && t > 0)) throw new Error(`sdmpDistillationTerms: ${what} must be a positive number, got ${t}`);
  }
  const m = lam instanceof tf.Tensor ? lam.shape[0] : lam.length;
  if (m !== n) throw new Error(`sdmpDistillationTerms: lam needs one value per row (${n}), got ${m}`);
  return tf.tidy(() => {
    const { source: label1, mix: label2 } = sdmpTargets(lam, opts);
    const c = tf.reshape(center, [1, k]);
    const teacherProbs = (t: tf.Tensor2D) => tf.softmax(tf.div(tf.sub(stopGradient(t), c), teacherTemp)) as tf.Tensor2D;
    const logPs = tf.logSoftmax(tf.div(studentMix, studentTemp)) as tf.Tensor2D;
    const h = (target: tf.Tensor2D) => tf.div(tf.neg(tf.sum(tf.mul(target, logPs))), n) as tf.Scalar;
    return { source: h(matMul(label1, teacherProbs(teacherSource)) as tf.Tensor2D), mix: h(matMul(label2, teacherProbs(teacherMix)) as tf.Tensor2D) };
  });
}
