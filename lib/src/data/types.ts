/** An in-memory labelled image dataset: uint8 pixels, NHWC, row-major. */
export interface ImageDataset {
  /** Short name, e.g. "fashion-mnist/train". */
  name: string;
  /** count * height * width * channels bytes, NHWC. */
  images: Uint8Array;
  /** count class indices. */
  labels: Uint8Array;
  classNames: string[];
  count: number;
  height: number;
  width: number;
  channels: number;
}
