/**
 * DINO in the method registry. Its options are the arms of the paper's collapse study (Figure 7,
 * Table 7) and its temperature sweep: `--no-centering`, `--no-sharpening` (tau_t = tau_s),
 * `--no-momentum-teacher` (the teacher is the student, copied every step), `--teacher-temp t` with
 * `--teacher-temp-warmup 0` for a fixed tau_t, and `--local-crops N` for multi-crop.
 *
 * Sizes for Fashion-MNIST (28x28x1, 60k images, 10 classes):
 * - K = 4096 head outputs, not the paper's 65,536 (ImageNet: 1.28M images, 1000 classes). DINO's
 *   outputs over-cluster the data (K >> classes), and the paper finds accuracy grows only slowly
 *   with K. On 60k images 65,536 prototypes would outnumber the images (each used by less than one
 *   image an epoch) and the 256 x 65,536 last layer (16.8M weights, 20x ViT-tiny) would dominate
 *   the step on 2 cores; 4096 keeps ~15 images a prototype an epoch and stays >> 10 classes.
 * - The head's MLP hidden width: the paper's 2048 in the paper preset, 512 in quick (see there),
 *   256 in smoke (CI seconds); bottleneck 256.
 * - Multi-crop: 2 global 28x28 crops (patch grid 7x7) and 6 local 12x12 crops (3x3; 96/224 of
 *   the side, as the paper's 96 px locals of 224 px images), scales (0.4, 1) and (0.05, 0.4).
 * - Optimiser: AdamW, lr 5e-4 (the paper's 5e-4 x batch/256 at batch 256; kept at smaller batches
 *   since short runs need the larger step), weight decay 0.04 (the paper's start value; sslkit's
 *   trainer has no weight-decay schedule), gradient clipping 3.0 (paper), warm-up 10% of the run.
 * - Teacher temperature 0.04 -> 0.07 over the first 30% of the run (paper: 30 of 100 epochs).
 */
import type { RunConfig } from "../../presets";
import { DINO } from "../dino";
import { sdmpDefaults, sdmpOptionSpecs, withSdmp } from "../sdmp";
import { methodOption, registerMethod, specBackbone } from "../registry";

export const dinoSpec = registerMethod({
  name: "dino",
  summary: "DINO (Caron et al. 2021): self-distillation from an EMA teacher, multi-crop, centering + sharpening",
  options: [
    { key: "numLocalCrops", flag: "local-crops", type: "integer", min: 0, max: 16, help: "local crops per image (0 = the 2 global crops only)" },
    { key: "localCropSize", flag: "local-crop-size", type: "integer", min: 0, max: 1024, help: "local crop side in px (0 = 96/224 of the image side, a multiple of the patch size)" },
    { key: "globalCropScaleMin", flag: "global-crop-scale-min", type: "number", min: 0.05, max: 1, help: "global crops cover [s, 1] of the image, locals [0.05, s] (paper 0.4; 0.14 without locals)" },
    { key: "teacherMomentum", flag: "teacher-momentum", type: "number", min: 0, max: 1, help: "teacher EMA momentum (base of the cosine to 1 unless --teacher-momentum-schedule constant)" },
    { key: "teacherMomentumSchedule", flag: "teacher-momentum-schedule", type: "enum", choices: ["cosine", "constant"], help: "cosine from the base to 1 (paper) or constant" },
    { key: "momentumTeacher", flag: "no-momentum-teacher", type: "set", value: false, help: "the teacher is the student, copied every step (momentum 0)" },
    { key: "centerMomentum", flag: "center-momentum", type: "number", min: 0, max: 1, help: "center EMA momentum m (paper 0.9)" },
    { key: "teacherTemp", flag: "teacher-temp", type: "number", min: 0, exclusiveMin: true, max: 10, help: "teacher temperature after the warm-up (paper 0.04-0.07)" },
    { key: "warmupTeacherTemp", flag: "warmup-teacher-temp", type: "number", min: 0, exclusiveMin: true, max: 10, help: "teacher temperature at step 0 (paper 0.04)" },
    { key: "teacherTempWarmup", flag: "teacher-temp-warmup", type: "number", min: 0, max: 1, help: "fraction of the run the teacher temperature warms up (0 = fixed --teacher-temp)" },
    { key: "studentTemp", flag: "student-temp", type: "number", min: 0, exclusiveMin: true, max: 10, help: "student temperature (paper 0.1)" },
    { key: "centering", flag: "no-centering", type: "set", value: false, help: "no centering (collapse: one dimension dominates)" },
    { key: "sharpening", flag: "no-sharpening", type: "set", value: false, help: "no sharpening: teacher temperature = student's (collapse: uniform output)" },
    { key: "outDim", flag: "out-dim", type: "integer", min: 2, max: 262144, help: "head outputs K (paper 65536 on ImageNet)" },
    { key: "headHiddenDim", flag: "head-hidden-dim", type: "integer", min: 1, max: 16384, help: "head MLP hidden width (paper 2048)" },
    { key: "bottleneckDim", flag: "bottleneck-dim", type: "integer", min: 1, max: 4096, help: "head bottleneck width (paper 256)" },
    { key: "freezeLastLayerEpochs", flag: "freeze-last-layer", type: "integer", min: 0, max: 1000, help: "epochs the head's last layer is frozen (paper 1)" },
    { key: "evalEncoder", flag: "eval-encoder", type: "enum", choices: ["teacher", "student"], help: "the encoder evaluated (paper: teacher)" },
    ...sdmpOptionSpecs,
  ],
  defaults: {
    numLocalCrops: 6,
    localCropSize: 0,
    globalCropScaleMin: 0.4,
    teacherMomentum: 0.996,
    teacherMomentumSchedule: "cosine",
    momentumTeacher: true,
    centerMomentum: 0.9,
    teacherTemp: 0.07,
    warmupTeacherTemp: 0.04,
    teacherTempWarmup: 0.3,
    studentTemp: 0.1,
    centering: true,
    sharpening: true,
    outDim: 4096,
    headHiddenDim: 2048,
    bottleneckDim: 256,
    freezeLastLayerEpochs: 1,
    evalEncoder: "teacher",
    ...sdmpDefaults,
  },
  presets: {
    all: { backbone: "vit-tiny", optimizer: "adamw", lr: 5e-4, weightDecay: 0.04, maxGradNorm: 3, warmupEpochs: 0.1 },
    // CI: 1,024 images, 16 steps at batch 64, 2 local crops, a small head, the last layer trained from step 0.
    smoke: { methodOptions: { numLocalCrops: 2, outDim: 256, headHiddenDim: 256, bottleneckDim: 64, freezeLastLayerEpochs: 0 } },
    // A DINO step (8 crops, the teacher's pass) costs ~2.5x a two-view SimCLR ViT-tiny step per image
    // (measured in one process here), ~95 img/s at batch 64: 3 epochs over 40,000 images (1,875
    // steps, the first epoch with the last layer frozen as the paper's) train in ~21 min. Batch 64
    // keeps a step's 10,240 student tokens under the gradient-checkpointing threshold (12,288). The
    // head's hidden width is 512, not 2048: the paper's 2048 feeds a 384-d ViT-S (5.3x), 512 keeps
    // that ratio to ViT-tiny's 128-d class token and halves the step's head cost.
    quick: { epochs: 3, batchSize: 64, trainSubset: 40000, warmupEpochs: 0.3, checkpointEvery: 200, collapseEvery: 10, methodOptions: { headHiddenDim: 512 } },
    // GPU scale (paper sec. 4 / main_dino.py): 100 epochs, batch 256, 8 local crops, lr warm-up 10 epochs.
    paper: { epochs: 100, batchSize: 256, optimizer: "adamw", lr: 5e-4, weightDecay: 0.04, warmupEpochs: 10, methodOptions: { numLocalCrops: 8 } },
  },
  create: withSdmp((config: RunConfig, inputShape) => {
    const backbone = () => specBackbone(config, inputShape);
    const opt = <T extends number | string | boolean>(key: string) => methodOption<T>(config, key);
    const momentumTeacher = opt<boolean>("momentumTeacher");
    const scaleMin = opt<number>("globalCropScaleMin");
    return new DINO({
      backbone: backbone(),
      teacherBackbone: backbone(),
      inputShape,
      outDim: opt<number>("outDim"),
      headHiddenDim: opt<number>("headHiddenDim"),
      bottleneckDim: opt<number>("bottleneckDim"),
      numLocalCrops: opt<number>("numLocalCrops"),
      localCropSize: opt<number>("localCropSize") || undefined,
      globalCropScale: [scaleMin, 1],
      localCropScale: [Math.min(0.05, scaleMin), scaleMin],
      studentTemp: opt<number>("studentTemp"),
      teacherTemp: opt<number>("teacherTemp"),
      warmupTeacherTemp: opt<number>("warmupTeacherTemp"),
      teacherTempWarmup: opt<number>("teacherTempWarmup"),
      sharpening: opt<boolean>("sharpening"),
      centering: opt<boolean>("centering"),
      centerMomentum: opt<number>("centerMomentum"),
      teacherMomentum: momentumTeacher ? opt<number>("teacherMomentum") : 0,
      teacherMomentumSchedule: momentumTeacher ? (opt<string>("teacherMomentumSchedule") as "cosine" | "constant") : "constant",
      freezeLastLayerEpochs: opt<number>("freezeLastLayerEpochs"),
      evalEncoder: opt<string>("evalEncoder") as "teacher" | "student",
      seed: config.seed,
    });
  }),
});
