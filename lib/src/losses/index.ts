/** Self-supervised losses, one module a loss. */
export { ntXentLoss, contrastiveAccuracy } from "./nt-xent";
export { byolLoss } from "./byol";
export { maskedL1Loss } from "./reconstruction";
export { maeLoss, normalizePatches, MAE_NORM_PIX_EPS } from "./mae";
export { infoNceLoss, infoNceAccuracy } from "./info-nce";
