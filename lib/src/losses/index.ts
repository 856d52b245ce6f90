/** Self-supervised losses, one module a loss. */
export { ntXentLoss, contrastiveAccuracy } from "./nt-xent";
export { byolLoss } from "./byol";
export { maskedL1Loss } from "./reconstruction";
