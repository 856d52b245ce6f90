/** Self-supervised losses, one module a loss. */
export { ntXentLoss, contrastiveAccuracy } from "./nt-xent";
export { dinoLoss, dinoLossTerms, dinoLossTermsStacked, dinoBatchCenter, dinoCenterUpdate, stopGradient } from "./dino";
export { sdmpLoss, sdmpLossTerms, sdmpTargets, sdmpCommon, sdmpDistillationTerms } from "./sdmp";
export { maskedL1Loss } from "./reconstruction";
export { byolLoss } from "./byol";
export { maeLoss, normalizePatches, MAE_NORM_PIX_EPS } from "./mae";
export { infoNceLoss, infoNceAccuracy } from "./info-nce";
