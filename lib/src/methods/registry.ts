/**
 * The method registry: the CLI, the presets, the sweep runner and the notebooks find a method, its
 * options (with their CLI flags and validation) and its preset adjustments by name.
 *
 *   registerMethod({ name: "moco-v1", options: [...], presets: {...}, create: (config, shape) => ... })
 *
 * A method's own options live in `RunConfig.methodOptions` (plain JSON, so a configuration hashes,
 * saves and resumes as it is); the shared ones (temperature, epochs, ...) are RunConfig fields.
 */
import { createBackbone } from "../nn";
import type { Backbone, BackboneName } from "../nn";
import { ViT } from "../nn/vit";
import { PRESET_NAMES, presetConfig, registerPresetOverrides } from "../presets";
import type { MethodOptionValue, PresetName, RunConfig } from "../presets";
import type { SSLMethod } from "./types";

/**
 * How one option is given and checked:
 * - `number` / `integer`: `--flag 0.5`, within [min, max] (`exclusiveMin`: > min);
 * - `enum`: `--flag a` with a in `choices`;
 * - `onoff`: `--flag on|off` → true / false;
 * - `list`: `--flag a,b` with each item in `choices` (no repeats) → string[];
 * - `set`: `--flag` with no value sets the option to `value` (e.g. `--no-predictor` → predictor false).
 */
export interface MethodOptionSpec {
  /** Key in RunConfig.methodOptions. */
  key: string;
  /** CLI flag without the dashes, e.g. "queue-size". Two options may share a key (`--x on|off` and `--no-x`). */
  flag: string;
  type: "number" | "integer" | "enum" | "onoff" | "list" | "set";
  help: string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  exclusiveMin?: boolean;
  /** For `set`: the value the bare flag stores. */
  value?: MethodOptionValue;
}

export interface MethodSpec {
  name: string;
  /** One line for the CLI's usage text. */
  summary: string;
  /** The method's own options, with their defaults (the default is in `defaults`, keyed like the option). */
  options: readonly MethodOptionSpec[];
  defaults: Record<string, MethodOptionValue>;
  /** Adjustments of the shared run configuration, per preset (applied on top of the preset). */
  presets?: Partial<Record<PresetName | "all", Partial<RunConfig>>>;
  /** Builds the method on a fresh backbone for images of `inputShape`. */
  create(config: RunConfig, inputShape: [number, number, number]): SSLMethod;
}

const REGISTRY = new Map<string, MethodSpec>();

export function registerMethod(spec: MethodSpec): MethodSpec {
  if (!/^[a-z][a-z0-9-]*$/.test(spec.name)) throw new Error(`registerMethod: bad method name '${spec.name}'`);
  if (REGISTRY.has(spec.name)) throw new Error(`registerMethod: '${spec.name}' is registered already`);
  const flags = new Set<string>();
  for (const o of spec.options) {
    if (flags.has(o.flag)) throw new Error(`registerMethod(${spec.name}): flag --${o.flag} declared twice`);
    flags.add(o.flag);
    if (o.type !== "set" && !(o.key in spec.defaults)) throw new Error(`registerMethod(${spec.name}): option '${o.key}' has no default`);
  }
  REGISTRY.set(spec.name, spec);
  for (const p of PRESET_NAMES) {
    const o = { ...(spec.presets?.all ?? {}), ...(spec.presets?.[p] ?? {}) };
    registerPresetOverrides(spec.name, p, { ...o, methodOptions: { ...spec.defaults, ...(o.methodOptions ?? {}) } });
  }
  return spec;
}

export function methodNames(): string[] {
  return [...REGISTRY.keys()];
}

export function getMethodSpec(name: string): MethodSpec {
  const spec = REGISTRY.get(name);
  if (!spec) throw new Error(`unknown method '${name}' (expected one of: ${methodNames().join(", ")})`);
  return spec;
}

/** Every option flag of every registered method (for the CLI's parser and usage text). */
export function allMethodOptions(): { method: string; option: MethodOptionSpec }[] {
  return [...REGISTRY.values()].flatMap((s) => s.options.map((option) => ({ method: s.name, option })));
}

/** Parse and check one option's CLI value; throws an Error that names the flag. */
export function parseMethodOption(o: MethodOptionSpec, raw: string | boolean | undefined): MethodOptionValue {
  const fail = (what: string): never => {
    throw new Error(`--${o.flag} expects ${what}, got '${String(raw)}'`);
  };
  if (o.type === "set") return o.value ?? true;
  if (typeof raw !== "string") return fail("a value");
  switch (o.type) {
    case "number":
    case "integer": {
      const n = Number(raw);
      const range =
        (o.min !== undefined ? ` ${o.exclusiveMin ? ">" : ">="} ${o.min}` : "") + (o.max !== undefined ? `${o.min !== undefined ? " and" : ""} <= ${o.max}` : "");
      const what = `${o.type === "integer" ? "an integer" : "a number"}${range}`;
      if (raw.trim() === "" || !Number.isFinite(n) || (o.type === "integer" && !Number.isInteger(n))) return fail(what);
      if (o.min !== undefined && (o.exclusiveMin ? n <= o.min : n < o.min)) return fail(what);
      if (o.max !== undefined && n > o.max) return fail(what);
      return n;
    }
    case "enum":
      if (!o.choices?.includes(raw)) return fail(`one of ${o.choices?.join(" | ")}`);
      return raw;
    case "onoff":
      if (raw !== "on" && raw !== "off") return fail("on or off");
      return raw === "on";
    case "list": {
      const items = raw.split(",").map((s) => s.trim());
      const bad = items.filter((s) => !o.choices?.includes(s));
      if (items.length === 0 || bad.length > 0 || new Set(items).size !== items.length) return fail(`a comma-separated list of ${o.choices?.join(", ")} without repeats`);
      return items;
    }
  }
}

/** Reads a method option from a configuration, with its registered default; throws on a missing key. */
export function methodOption<T extends MethodOptionValue>(config: RunConfig, key: string): T {
  const v = config.methodOptions?.[key] ?? getMethodSpec(config.method).defaults[key];
  if (v === undefined) throw new Error(`${config.method}: no option '${key}'`);
  return v as T;
}

/** The full run configuration of a registered method under a preset. */
export function methodConfig(method: string, preset: PresetName | string = "quick", overrides: Partial<RunConfig> = {}): RunConfig {
  getMethodSpec(method);
  const base = presetConfig(method, preset);
  return { ...base, ...overrides, methodOptions: { ...base.methodOptions, ...(overrides.methodOptions ?? {}) } };
}

/**
 * The configuration's backbone (`config.backbone`, initialised from `config.seed`) for images of
 * `inputShape`. With `{ vit: true, method }` it must be a ViT: any other is disposed and refused.
 */
export function specBackbone(config: RunConfig, inputShape: [number, number, number], opts: { vit: true; method: string }): ViT;
export function specBackbone(config: RunConfig, inputShape: [number, number, number]): Backbone;
export function specBackbone(config: RunConfig, inputShape: [number, number, number], opts?: { vit: true; method: string }): Backbone {
  const backbone = createBackbone(config.backbone as BackboneName, { inputShape, seed: config.seed });
  if (opts?.vit && !(backbone instanceof ViT)) {
    backbone.dispose();
    throw new Error(`${opts.method}: the backbone must be a ViT (vit-tiny, vit-s16), got '${config.backbone}'`);
  }
  return backbone;
}

/** Build a registered method from a configuration. */
export function createMethod(config: RunConfig, inputShape: [number, number, number]): SSLMethod {
  return getMethodSpec(config.method).create(config, inputShape);
}
