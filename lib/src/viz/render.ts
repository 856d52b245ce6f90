/**
 * Server-side rendering of Vega-Lite specs: vega-lite compile -> vega View (renderer "none",
 * headless) -> SVG string -> PNG through sharp (librsvg; text uses the system's fonts via
 * fontconfig, e.g. DejaVu Sans).
 */
import * as vega from "vega";
import * as vegaLite from "vega-lite";
import sharp from "sharp";
import type { VegaLiteSpec } from "./charts";

export interface VegaRenderOptions {
  /** Pixel scale factor (default 1 for SVG, 2 for PNG). */
  scale?: number;
  /** Background colour (default white). */
  background?: string;
}

function assertSpec(spec: unknown, what: string): asserts spec is VegaLiteSpec {
  if (!spec || typeof spec !== "object" || Array.isArray(spec)) throw new Error(`${what}: spec must be a Vega-Lite spec object`);
}

/** Compile a Vega-Lite spec to a Vega spec (throws on an invalid spec). */
export function compileVegaLite(spec: VegaLiteSpec): vega.Spec {
  assertSpec(spec, "compileVegaLite");
  return vegaLite.compile(spec).spec as vega.Spec;
}

/** Render a Vega-Lite spec to an SVG document. */
export async function vegaLiteToSvg(spec: VegaLiteSpec, opts: VegaRenderOptions = {}): Promise<string> {
  const vgSpec = compileVegaLite(spec);
  const scale = opts.scale ?? 1;
  if (!(scale > 0)) throw new Error(`vegaLiteToSvg: scale must be > 0, got ${scale}`);
  const view = new vega.View(vega.parse(vgSpec), { renderer: "none", logLevel: vega.Warn });
  try {
    view.background(opts.background ?? "white");
    return await view.toSVG(scale);
  } finally {
    view.finalize();
  }
}

/** Width and height attributes of an SVG document (in pixels). */
export function svgSize(svg: string): { width: number; height: number } {
  const open = /<svg\b[^>]*>/.exec(svg)?.[0] ?? "";
  const width = Number(/\swidth="([\d.]+)"/.exec(open)?.[1]);
  const height = Number(/\sheight="([\d.]+)"/.exec(open)?.[1]);
  if (!(width > 0) || !(height > 0)) throw new Error("svgSize: the SVG has no numeric width/height");
  return { width, height };
}

/** Render a Vega-Lite spec to a PNG (default 2x pixel scale for crisp output). */
export async function vegaLiteToPng(spec: VegaLiteSpec, opts: VegaRenderOptions = {}): Promise<Buffer> {
  const svg = await vegaLiteToSvg(spec, { ...opts, scale: opts.scale ?? 2 });
  return sharp(Buffer.from(svg)).png().toBuffer();
}
