/**
 * DINO's self-distillation loss (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
 * Transformers", eq. 2-3 and the reference DINOLoss):
 *
 *   P_t = softmax((g_t(x) - c) / tau_t)        teacher: centred, sharpened, no gradient
 *   log P_s = log_softmax(g_s(x') / tau_s)     student
 *   L = 1 / (T (V - 1)) sum_{i < T} sum_{v != i} mean_n [ -sum_k P_t^i[n, k] log P_s^v[n, k] ]
 *
 * over the T teacher (global) crops i and the V student crops v (the first T of which are the same
 * global crops), and the center update c <- m c + (1 - m) mean_n g_t(x_n) (eq. 4).
 * Because H(P_t, P_s) = h(P_t) + KL(P_t || P_s), the two collapse monitors of the paper's
 * Figure 7 come for free: the teacher entropy h(P_t) and the KL term = loss - h(P_t).
 */
import * as tf from "@tensorflow/tfjs-core";
import * as fastOps from "../nn/fast-ops";
import { columnMeans } from "../nn/fast-ops";
import { stopGradient } from "../nn/no-grad";

/** The loss and its two parts, averaged like the loss (over the pairs and the batch). */
export interface DinoLossTerms {
  /** Cross-entropy H(P_t, P_s) averaged over pairs (i, v != i) and images. */
  loss: tf.Scalar;
  /** Teacher entropy h(P_t) in nats (mean over teacher crops and images); log K for a uniform output, 0 for a one-hot one. */
  teacherEntropy: tf.Scalar;
  /** KL(P_t || P_s) averaged over the same pairs: loss - teacherEntropy. */
  kl: tf.Scalar;
}

/** Re-exported from nn/no-grad: x with a zero gradient (torch's .detach()), for the teacher's probabilities. */
export { stopGradient };

function checkCenterAndTemps(fn: string, k: number, center: tf.Tensor, studentTemp: number, teacherTemp: number): void {
  if (!(center instanceof tf.Tensor) || center.size !== k || (center.rank !== 1 && !(center.rank === 2 && center.shape[0] === 1))) {
    throw new Error(`${fn}: center must be [${k}] or [1, ${k}], got [${center?.shape}]`);
  }
  for (const [what, t] of [["studentTemp", studentTemp], ["teacherTemp", teacherTemp]] as const) {
    if (!(Number.isFinite(t) && t > 0)) throw new Error(`${fn}: ${what} must be a positive number, got ${t}`);
  }
}

function checkInputs(fn: string, student: readonly tf.Tensor2D[], teacher: readonly tf.Tensor2D[], center: tf.Tensor, studentTemp: number, teacherTemp: number): void {
  if (!Array.isArray(student) || !Array.isArray(teacher) || teacher.length < 1) throw new Error(`${fn}: student and teacher must be arrays of [N, K] tensors (at least one teacher crop)`);
  if (student.length <= 1 || student.length < teacher.length) {
    throw new Error(`${fn}: need more than one student crop and at least as many as teacher crops (${teacher.length}), got ${student.length}`);
  }
  const [n, k] = teacher[0].shape;
  for (const [what, list] of [["student", student], ["teacher", teacher]] as const) {
    list.forEach((t, i) => {
      if (!(t instanceof tf.Tensor) || t.rank !== 2 || t.shape[0] !== n || t.shape[1] !== k) {
        throw new Error(`${fn}: ${what}[${i}] must be [${n}, ${k}] like teacher[0], got [${t?.shape}]`);
      }
    });
  }
  checkCenterAndTemps(fn, k, center, studentTemp, teacherTemp);
}

/**
 * The DINO loss with its two monitors. `student`: V crops' outputs [N, K], the first
 * `teacher.length` of them the global crops; `teacher`: the T global crops' teacher outputs;
 * `center`: [K] or [1, K]. No gradient flows into `teacher` or `center`.
 */
export function dinoLossTerms(student: readonly tf.Tensor2D[], teacher: readonly tf.Tensor2D[], center: tf.Tensor, studentTemp: number, teacherTemp: number): DinoLossTerms {
  checkInputs("dinoLoss", student, teacher, center, studentTemp, teacherTemp);
  return tf.tidy(() => {
    const cat = (list: readonly tf.Tensor2D[]) => (list.length === 1 ? list[0] : (tf.concat(list as tf.Tensor2D[], 0) as tf.Tensor2D));
    return { ...dinoLossTermsStacked(cat(student), cat(teacher), student.length, teacher.length, center, studentTemp, teacherTemp) };
  });
}

/**
 * dinoLossTerms on stacked outputs: `student` [V N, K] (crop-major: rows v N .. (v+1) N - 1 are crop
 * v, the global crops first) and `teacher` [T N, K]. What the DINO method calls: a head's one output
 * for all crops, with no split or concat of [N, K] tensors (wasm's Concat and SplitV copy them
 * element by element, ~0.2 s a step at batch 64 with K = 4096).
 */
export function dinoLossTermsStacked(student: tf.Tensor2D, teacher: tf.Tensor2D, numStudentCrops: number, numTeacherCrops: number, center: tf.Tensor, studentTemp: number, teacherTemp: number): DinoLossTerms {
  const [V, T] = [numStudentCrops, numTeacherCrops];
  if (!(Number.isInteger(V) && Number.isInteger(T) && T >= 1 && V > 1 && V >= T)) {
    throw new Error(`dinoLoss: need T >= 1 teacher crops and V > 1, V >= T student crops, got T = ${T}, V = ${V}`);
  }
  if (student?.rank !== 2 || teacher?.rank !== 2 || student.shape[0] % V !== 0 || teacher.shape[0] * V !== student.shape[0] * T || student.shape[1] !== teacher.shape[1]) {
    throw new Error(`dinoLoss: student [${student?.shape}] and teacher [${teacher?.shape}] are not ${V} and ${T} crops of [N, K]`);
  }
  const n = teacher.shape[0] / T;
  const k = teacher.shape[1];
  checkCenterAndTemps("dinoLoss", k, center, studentTemp, teacherTemp);
  return tf.tidy(() => {
    const c = tf.reshape(center, [1, k]);
    // log P_s for every crop [V N, K] and its sum over the crops [1, N K] (a product with ones)
    const logPs = tf.logSoftmax(tf.mul(student, 1 / studentTemp));
    const sumLogPs = fastOps.matMul(tf.ones([1, V]), tf.reshape(logPs, [V, n * k]));
    // P_t of the global crops [T N, K], no gradient into the teacher or the center
    const logPt = tf.logSoftmax(tf.mul(stopGradient(tf.sub(teacher, c)), 1 / teacherTemp));
    const pt = tf.exp(logPt);
    const sumPt = fastOps.matMul(tf.ones([1, T]), tf.reshape(pt, [T, n * k]));
    // sum_i sum_{v != i} -<P_t^i, log P_s^v> = -<sum_i P_t^i, sum_v log P_s^v> + sum_i <P_t^i, log P_s^i>
    const own = tf.sum(tf.mul(pt, tf.slice(logPs, [0, 0], [T * n, k])));
    const ce = tf.sub(own, tf.sum(tf.mul(sumPt, sumLogPs)));
    const loss = tf.div(ce, n * T * (V - 1)) as tf.Scalar;
    const teacherEntropy = tf.div(tf.neg(tf.sum(tf.mul(pt, logPt))), n * T) as tf.Scalar;
    return { loss, teacherEntropy, kl: tf.sub(loss, teacherEntropy) as tf.Scalar };
  });
}

/**
 * DINOLoss (Caron et al. 2021): cross-entropy between the centred, sharpened teacher distribution of
 * each global crop and the student distribution of every other crop, averaged over the pairs.
 */
export function dinoLoss(student: readonly tf.Tensor2D[], teacher: readonly tf.Tensor2D[], center: tf.Tensor, studentTemp: number, teacherTemp: number): tf.Scalar {
  return tf.tidy(() => dinoLossTerms(student, teacher, center, studentTemp, teacherTemp).loss);
}

/** The batch center: the mean of the teacher outputs over every global crop and image, [1, K] (a list of [N, K] or one stacked [T N, K]). */
export function dinoBatchCenter(teacher: readonly tf.Tensor2D[] | tf.Tensor2D): tf.Tensor2D {
  const list = teacher instanceof tf.Tensor ? [teacher] : teacher;
  if (!Array.isArray(list) || list.length === 0 || list.some((t) => t?.rank !== 2)) throw new Error("dinoBatchCenter: expected [N, K] teacher outputs");
  return tf.tidy(() => {
    const all = (list.length === 1 ? list[0] : tf.concat(list as tf.Tensor2D[], 0)) as tf.Tensor2D;
    return tf.reshape(columnMeans(all), [1, all.shape[1]]) as tf.Tensor2D;
  });
}

/** Eq. 4: c <- m c + (1 - m) batchCenter (a new tensor of c's shape; m = 0 takes the batch center). */
export function dinoCenterUpdate(center: tf.Tensor, batchCenter: tf.Tensor, momentum: number): tf.Tensor {
  if (!(momentum >= 0 && momentum <= 1)) throw new Error(`dinoCenterUpdate: momentum must be in [0, 1], got ${momentum}`);
  if (center.size !== batchCenter.size) throw new Error(`dinoCenterUpdate: center [${center.shape}] and batch center [${batchCenter.shape}] differ in size`);
  return tf.tidy(() => tf.add(tf.mul(center, momentum), tf.mul(tf.reshape(batchCenter, center.shape), 1 - momentum)));
}
